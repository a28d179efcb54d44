"""Verification products (数据核验): define, approve, call, withdraw, stats, audit.

The lifecycle (states in :class:`policies.verification.ProductState`, each move one
ledger entry)::

    operator defines (under an agreement whose scope includes "verification")
    -> authority approves: the index is built, the product is published | rejected
    -> consumers call it; each call re-asks the gate (sandbox.data.grants.may_run):
       a suspended, expired or terminated agreement withdraws the product (Art. 24)
    -> a new version of a dataset rebuilds the index at the next call

A call (:meth:`VerificationService.call`) normalises the keys, checks consent for
person-level products (Art. 19), looks every subject up in the index, and then hands
one unit of work to the group committer (:mod:`sandbox.verification.commit`). Under the
store's write lock that unit checks the consumer's standing and its per-minute and
per-day allowance, the per-subject daily limit, and the enumeration defence
(:func:`policies.verification.assess`); then it writes the counters, one ledger
entry ``verify.call`` (keyed hashes, consent reference, codes; never a key value)
and one ``verify_calls`` row per subject. The caller is answered after the commit.

An auditor asks "who verified this subject?" (:func:`who`) with the subject's key,
hashed the same way.
"""

from __future__ import annotations

import json
import secrets as _secrets
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection

from policies.admission import QueryScope, TableScope
from policies.errors import Conflict, InputError, NotFound, PolicyRefusal, RateLimited, SandboxError
from policies.verification import (
    AdmittedRule,
    Consent,
    Definition,
    ProductState,
    Signals,
    Standing,
    Thresholds,
    admit_rule,
    assess,
    may_move,
    worse,
)
from sandbox.core import ledger as ledger_mod
from sandbox.core.ledger import SYSTEM, Actor, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, by_name, require_role
from sandbox.core.store import dataset_versions, datasets
from sandbox.core.store import ledger as ledger_table
from sandbox.data.grants import may_run
from sandbox.data.vault import get_version, list_datasets
from sandbox.verification.commit import GroupCommitter
from sandbox.verification.index import IndexReader, build
from sandbox.verification.keys import (
    caller_value,
    check_hash,
    key_hash,
    load_secret,
    normalise_key,
    subject_hash,
)
from sandbox.verification.tables import (
    verify_calls,
    verify_counters,
    verify_guesses,
    verify_products,
    verify_standing,
)
from sandbox.workflow.base import require_authority
from sandbox.workflow.jurisdiction import require_city, scope_of
from sandbox.workflow.tables import agreements

MAX_BATCH = 1000
RESERVED = {"products", "who"}
KIND = "verification"
WITHDRAWING = {
    "agreement_suspended",
    "agreement_terminated",
    "agreement_expired",
    "grant_suspended",
    "grant_revoked",
    "grant_expired",
    "not_granted",
}
FRESHNESS_S = 1.0  # how long a process trusts its look at the datasets' latest versions


# --------------------------------------------------------------------------- results


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


# --------------------------------------------------------------------------- definition


def _scope(conn: Connection, platform: Platform) -> QueryScope:
    tables = {}
    for row in list_datasets(conn):
        version = get_version(conn, platform, row["name"])
        tables[row["name"]] = TableScope(row["name"], version.classification)
    return QueryScope(tables=tables)


def _admit(conn: Connection, platform: Platform, definition: Definition) -> AdmittedRule:
    return admit_rule(definition, _scope(conn, platform))


def _agreement_of(grants: Mapping, rule: AdmittedRule) -> int:
    grant = grants[rule.definition.dataset]
    if grant.agreement_id is None:
        raise PolicyRefusal(
            "agreement_required",
            f"verification products are defined under an operation agreement; the grant for "
            f"'{rule.definition.dataset}' is a direct grant",
            article="Art. 13",
            subject=rule.definition.dataset,
            hint="apply under a notice with job kind 'verification' and request the data",
        )
    return grant.agreement_id


def define(
    platform: Platform, operator: Principal, definition: Definition | Mapping
) -> dict[str, Any]:
    """File a product definition; it waits for the authority's approval."""
    require_role(operator, Role.OPERATOR, action="define verification products", article="Art. 13")
    if not isinstance(definition, Definition):
        definition = Definition.from_dict(definition)
    if definition.name in RESERVED:
        raise InputError(f"'{definition.name}' is a reserved name; choose another")
    with platform.store.transaction() as conn:
        rule = _admit(conn, platform, definition)
        grants = may_run(conn, operator, rule.tables, KIND, columns=rule.columns)
        agreement_id = _agreement_of(grants, rule)
        if conn.execute(
            select(verify_products.c.name).where(verify_products.c.name == definition.name)
        ).first():
            raise Conflict(f"a verification product named '{definition.name}' exists")
        stamp = now_utc()
        conn.execute(
            verify_products.insert().values(
                name=definition.name,
                operator_id=operator.id,
                agreement_id=agreement_id,
                definition_json=json.dumps(definition.to_dict()),
                status=ProductState.DEFINED.value,
                created_at=stamp,
                updated_at=stamp,
            )
        )
        platform.record(
            conn,
            operator.actor,
            "verify.defined",
            f"verification:{definition.name}",
            {
                "definition": definition.to_dict(),
                "agreement": agreement_id,
                "tables": list(rule.tables),
                "person_level": rule.person_level,
            },
            "Art. 13",
        )
    return {
        "name": definition.name,
        "state": ProductState.DEFINED.value,
        "agreement": agreement_id,
        "person_level": rule.person_level,
        "subject_keys": [k.name for k in rule.subject_keys],
        "check_keys": [k.name for k in rule.check_keys],
    }


def _row(conn: Connection, name: str):
    row = conn.execute(select(verify_products).where(verify_products.c.name == name)).first()
    if row is None:
        raise NotFound(f"no verification product '{name}'")
    return row


def _move(
    platform: Platform,
    conn: Connection,
    name: str,
    new: ProductState,
    actor: Actor,
    details: Mapping[str, Any],
    article: str,
    **values: Any,
) -> None:
    row = _row(conn, name)
    old = ProductState(row.status)
    if not may_move(old, new):
        raise Conflict(f"verification product '{name}' is {old.value}; it cannot become {new}")
    conn.execute(
        verify_products.update()
        .where(verify_products.c.name == name)
        .values(status=new.value, updated_at=now_utc(), **values)
    )
    platform.record(
        conn,
        actor,
        f"verify.{new.value}",
        f"verification:{name}",
        {"from": old.value, "to": new.value, **details},
        article,
    )


def _authority_for(conn: Connection, authority: Principal, row, action: str) -> None:
    agreement = conn.execute(select(agreements).where(agreements.c.id == row.agreement_id)).first()
    if agreement is None:
        raise NotFound(f"no agreement {row.agreement_id}")
    require_authority(authority, agreement.jurisdiction, action, "Art. 13")


def _latest_versions(conn: Connection, platform: Platform, tables: Sequence[str]) -> dict:
    return {t: get_version(conn, platform, t) for t in tables}


def approve(platform: Platform, authority: Principal, name: str) -> dict[str, Any]:
    """Publish a defined (or withdrawn) product: admit again, build the index, publish."""
    require_role(
        authority, Role.AUTHORITY, action="approve verification products", article="Art. 13"
    )
    secret = load_secret(platform.home / "keys")
    with platform.store.read() as conn:
        row = _row(conn, name)
        _authority_for(conn, authority, row, "approve verification products")
        if not may_move(ProductState(row.status), ProductState.PUBLISHED):
            raise Conflict(f"verification product '{name}' is {row.status}; it cannot be approved")
        definition = Definition.from_dict(json.loads(row.definition_json))
        rule = _admit(conn, platform, definition)
        may_run(conn, by_id(conn, row.operator_id), rule.tables, KIND, columns=rule.columns)
        versions = _latest_versions(conn, platform, rule.tables)
    built = build(platform, rule, versions, secret)
    with platform.store.transaction() as conn:
        _move(
            platform,
            conn,
            name,
            ProductState.PUBLISHED,
            authority.actor,
            {"versions": dict(built.versions), "index_rows": built.rows, "codes": definition.codes},
            "Art. 13",
            approved_by=authority.id,
            index_path=built.path,
            index_versions_json=json.dumps(dict(built.versions)),
        )
    return {
        "name": name,
        "state": ProductState.PUBLISHED.value,
        "versions": dict(built.versions),
        "index_rows": built.rows,
        "build_seconds": round(built.seconds, 3),
    }


def reject(platform: Platform, authority: Principal, name: str, reason: str) -> None:
    require_role(authority, Role.AUTHORITY, action="reject verification products")
    if not reason.strip():
        raise InputError("a rejection needs a reason (Art. 13)", article="Art. 13")
    with platform.store.transaction() as conn:
        _authority_for(conn, authority, _row(conn, name), "reject verification products")
        _move(
            platform,
            conn,
            name,
            ProductState.REJECTED,
            authority.actor,
            {"reason": reason},
            "Art. 13",
        )


def list_products(platform: Platform, viewer: Principal) -> list[dict]:
    """Consumers see published products; operators their own; the city authority and
    auditors all; a county authority those made under its county's agreements (Art. 5)."""
    with platform.store.read() as conn:
        rows = conn.execute(select(verify_products).order_by(verify_products.c.name)).all()
        scope = scope_of(conn, viewer)
        mine = scope.verifications if scope is not None else None
    out = []
    for row in rows:
        if mine is not None and row.name not in mine:
            continue
        if viewer.role is Role.CONSUMER and row.status != ProductState.PUBLISHED.value:
            continue
        if viewer.role is Role.OPERATOR and row.operator_id != viewer.id:
            continue
        if viewer.role in (Role.PROVIDER, Role.REVIEWER):
            continue
        definition = json.loads(row.definition_json)
        out.append(
            {
                "name": row.name,
                "state": row.status,
                "dataset": definition["dataset"],
                "keys": definition["keys"],
                "codes": definition["codes"],
                "description": definition["description"],
                "versions": json.loads(row.index_versions_json or "{}"),
            }
        )
    return out


def unblock(platform: Platform, authority: Principal, consumer: str, reason: str) -> None:
    """Lift the enumeration defence's block (or throttle) of a consumer: a consumer's
    standing spans every product of the platform, so this is the city authority's act."""
    require_city(authority, "lift verification blocks", "Art. 19")
    with platform.store.transaction() as conn:
        who_ = by_name(conn, consumer, Role.CONSUMER)
        conn.execute(verify_standing.delete().where(verify_standing.c.consumer_id == who_.id))
        platform.record(
            conn,
            authority.actor,
            "verify.unblocked",
            f"principal:{who_.name}",
            {"reason": reason},
            "Art. 19",
        )


# --------------------------------------------------------------------------- calls


@dataclass
class _Loaded:
    name: str
    definition: Definition
    rule: AdmittedRule
    reader: IndexReader
    versions: dict[str, int]
    index_path: str
    checked_at: float = 0.0


@dataclass(frozen=True)
class _Item:
    subject: tuple[str, ...]
    checks: tuple[str, ...]
    subject_hash: str
    key_hash: str
    check_hash: str | None
    consent: Consent | None
    code: str


@dataclass
class _Limits:
    per_minute: int
    per_day: int
    subject_per_day: int
    throttled_per_minute: int
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def of(cls, platform: Platform) -> _Limits:
        s = platform.settings
        return cls(
            per_minute=s["verify.consumer_per_minute"],
            per_day=s["verify.consumer_per_day"],
            subject_per_day=s["verify.subject_per_day"],
            throttled_per_minute=s["verify.throttled_per_minute"],
            thresholds=Thresholds(
                guess_ids_throttle=s["verify.guess_ids_throttle"],
                guess_ids_block=s["verify.guess_ids_block"],
                miss_min_calls=s["verify.miss_min_calls"],
                miss_share_throttle=s["verify.miss_share_throttle"],
                miss_share_block=s["verify.miss_share_block"],
            ),
        )


class VerificationService:
    """One per process: the secret, the loaded indexes and the group committer."""

    def __init__(self, platform: Platform):
        self.platform = platform
        self.secret = load_secret(platform.home / "keys")
        self.limits = _Limits.of(platform)
        self.committer = GroupCommitter(
            platform.store.engine, platform.settings["verify.commit_interval_ms"] / 1000.0
        )
        self._loaded: dict[str, _Loaded] = {}
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()

    def close(self) -> None:
        self.committer.close()

    # -- the product, checked at call time
    def _load(self, conn: Connection, row) -> _Loaded:
        loaded = self._loaded.get(row.name)
        if loaded is not None and loaded.index_path == row.index_path:
            return loaded
        definition = Definition.from_dict(json.loads(row.definition_json))
        rule = _admit(conn, self.platform, definition)
        reader = IndexReader(
            self.platform.home / row.index_path,
            definition.name,
            definition.codes,
            len(rule.check_keys),
        )
        loaded = _Loaded(
            row.name, definition, rule, reader, json.loads(row.index_versions_json), row.index_path
        )
        with self._lock:
            self._loaded[row.name] = loaded
        return loaded

    def _ready(self, product: str) -> _Loaded:
        """The published product with a fresh index, or the refusal (withdrawing it)."""
        with self.platform.store.read() as conn:
            row = conn.execute(
                select(verify_products).where(verify_products.c.name == product)
            ).first()
            if row is None or row.status in (ProductState.DEFINED, ProductState.REJECTED):
                raise NotFound(f"no published verification product '{product}'")
            operator = by_id(conn, row.operator_id)
            loaded = self._load(conn, row) if row.index_path else None
            tables = loaded.rule.tables if loaded else (json.loads(row.definition_json)["dataset"],)
            try:
                may_run(
                    conn, operator, tables, KIND, columns=loaded.rule.columns if loaded else None
                )
            except PolicyRefusal as refusal:
                if row.status == ProductState.PUBLISHED and refusal.rule in WITHDRAWING:
                    self._withdraw(product, refusal)
                raise
            if row.status == ProductState.WITHDRAWN:
                raise PolicyRefusal(
                    "product_withdrawn",
                    f"verification product '{product}' was withdrawn",
                    article="Art. 24",
                    subject=product,
                    hint="the authority may publish it again once the agreement is active",
                )
            stale = False
            if time.monotonic() - loaded.checked_at > FRESHNESS_S:
                latest = self._latest(conn, loaded.rule.tables)
                stale = latest != loaded.versions
                loaded.checked_at = time.monotonic()
        if stale:
            return self._rebuild(product)
        return loaded

    @staticmethod
    def _latest(conn: Connection, tables: Sequence[str]) -> dict[str, int]:
        rows = conn.execute(
            select(datasets.c.name, func.max(dataset_versions.c.version))
            .join(dataset_versions, dataset_versions.c.dataset_id == datasets.c.id)
            .where(datasets.c.name.in_(list(tables)))
            .group_by(datasets.c.name)
        ).all()
        return {name: version for name, version in rows}

    def _withdraw(self, product: str, refusal: PolicyRefusal) -> None:
        with self.platform.store.transaction() as conn:
            row = _row(conn, product)
            if row.status != ProductState.PUBLISHED:
                return
            _move(
                self.platform,
                conn,
                product,
                ProductState.WITHDRAWN,
                SYSTEM,
                {"rule": refusal.rule, "reason": refusal.message},
                refusal.article or "Art. 24",
            )

    def _rebuild(self, product: str) -> _Loaded:
        with self._build_lock:
            return refresh(self.platform, product, service=self)

    # -- the call
    def call(
        self,
        consumer: Principal,
        product: str,
        items: Sequence[Mapping[str, Any]],
        consent: Mapping[str, Any] | None = None,
    ) -> CallResult:
        """Answer up to 1,000 subjects: ``items`` are ``{"keys": {...}, "consent": {...}}``."""
        require_role(
            consumer, Role.CONSUMER, action="call verification products", article="Art. 15"
        )
        if not 1 <= len(items) <= MAX_BATCH:
            raise InputError(f"a call asks about 1 to {MAX_BATCH} subjects, not {len(items)}")
        loaded = self._ready(product)
        prepared = [self._prepare(loaded, item, consent) for item in items]
        request_id = _secrets.token_hex(8)
        outcome = self.committer.run(
            lambda conn: self._record(conn, consumer, loaded, request_id, prepared)
        )
        if isinstance(outcome, SandboxError):
            raise outcome
        return outcome

    def _prepare(self, loaded: _Loaded, item: Mapping, consent: Mapping | None) -> _Item:
        rule = loaded.rule
        keys = item.get("keys") if isinstance(item, Mapping) else None
        if not isinstance(keys, Mapping):
            raise InputError("each subject needs 'keys': {" + ", ".join(rule.key_order) + "}")
        wanted = set(rule.definition.keys)
        if set(keys) != wanted:
            missing = sorted(wanted - set(keys)) or sorted(set(keys) - wanted)
            raise InputError(
                f"key '{missing[0]}' is missing or unknown; product '{loaded.name}' takes: "
                + ", ".join(rule.definition.keys)
            )
        subject = tuple(caller_value(k.name, keys[k.name]) for k in rule.subject_keys)
        checks = tuple(caller_value(k.name, keys[k.name]) for k in rule.check_keys)
        given = item.get("consent") or consent
        parsed = None
        if rule.person_level or given is not None:
            parsed = Consent.from_dict(given)
            values = [v for v in subject + checks if len(v) >= 2]
            for text in parsed.to_dict().values():
                if any(v in normalise_key(text) for v in values):
                    raise InputError(
                        "the consent's fields must not repeat the subject's key values "
                        "(they would reach the ledger); give a reference to your record"
                    )
        code = loaded.reader.lookup(self.secret, subject, checks)
        name = loaded.name
        return _Item(
            subject=subject,
            checks=checks,
            subject_hash=subject_hash(self.secret, subject),
            key_hash=key_hash(self.secret, name, subject + checks),
            check_hash=check_hash(self.secret, name, checks) if checks else None,
            consent=parsed,
            code=code,
        )

    # -- inside the group commit: limits, defence, ledger
    def _record(
        self,
        conn: Connection,
        consumer: Principal,
        loaded: _Loaded,
        request_id: str,
        items: Sequence[_Item],
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
        results, seen, answered = self._per_subject(conn, items, clock.day)
        new, reason = self._enumeration(
            conn, consumer, loaded, request_id, standing, answered, clock
        )
        _bump(conn, "consumer_minute", str(consumer.id), clock.minute, len(items))
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
        self, conn: Connection, items: Sequence[_Item], day: str
    ) -> tuple[list[ItemResult], dict[str, int], list[_Item]]:
        """The per-subject daily limit, across consumers and products: each item's result,
        the subjects answered with how often, and the items answered."""
        results: list[ItemResult] = []
        seen: dict[str, int] = {}
        answered: list[_Item] = []
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
            seen[item.subject_hash] = seen.get(item.subject_hash, 0) + 1
            answered.append(item)
            results.append(ItemResult(item.code))
        return results, seen, answered

    def _enumeration(
        self,
        conn: Connection,
        consumer: Principal,
        loaded: _Loaded,
        request_id: str,
        standing: Standing,
        answered: Sequence[_Item],
        clock: _Clock,
    ) -> tuple[Standing, str]:
        """The enumeration defence with this call counted: records the misses, counts the
        consumer's day, judges (:func:`policies.verification.assess`) and, when the
        standing worsens, alerts. Returns the consumer's standing after this call and why."""
        me, day = str(consumer.id), clock.day
        miss_codes = set(loaded.definition.miss_codes)
        misses = [i for i in answered if i.code in miss_codes]
        for item in misses:
            if item.check_hash is not None:
                conn.execute(
                    sqlite_insert(verify_guesses)
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
        loaded: _Loaded,
        request_id: str,
        items: Sequence[_Item],
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
        loaded: _Loaded,
        request_id: str,
        standing: Standing,
        reason: str,
        day: str,
    ) -> None:
        from sandbox.workflow.supervision import notify

        stamp = now_utc()
        conn.execute(
            sqlite_insert(verify_standing)
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
            "consumer": consumer.name,
            "standing": standing.value,
            "reason": reason,
            "product": loaded.name,
            "request_id": request_id,
        }
        self.platform.record(
            conn, SYSTEM, "verify.alert", f"principal:{consumer.name}", details, "Art. 19"
        )
        row = _row(conn, loaded.name)
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
        sqlite_insert(verify_counters)
        .values(kind=kind, key=key, window=window, n=n)
        .on_conflict_do_update(
            index_elements=["kind", "key", "window"], set_={"n": verify_counters.c.n + n}
        )
    )


def _seconds_to_midnight(now: datetime) -> int:
    tomorrow = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return int((tomorrow - now).total_seconds()) + 1


def refresh(
    platform: Platform, product: str, service: VerificationService | None = None
) -> _Loaded | None:
    """Rebuild the index if a dataset of the product has a newer version (ledgered)."""
    secret = load_secret(platform.home / "keys")
    with platform.store.read() as conn:
        row = _row(conn, product)
        if row.status != ProductState.PUBLISHED:
            return None
        definition = Definition.from_dict(json.loads(row.definition_json))
        rule = _admit(conn, platform, definition)
        versions = _latest_versions(conn, platform, rule.tables)
        current = json.loads(row.index_versions_json or "{}")
    latest = {t: v.version for t, v in versions.items()}
    if latest != current:
        built = build(platform, rule, versions, secret)
        with platform.store.transaction() as conn:
            conn.execute(
                verify_products.update()
                .where(verify_products.c.name == product)
                .values(
                    index_path=built.path,
                    index_versions_json=json.dumps(dict(built.versions)),
                    updated_at=now_utc(),
                )
            )
            platform.record(
                conn,
                SYSTEM,
                "verify.index",
                f"verification:{product}",
                {"from": current, "to": dict(built.versions), "index_rows": built.rows},
                "Art. 14",
            )
    if service is None:
        return None
    with platform.store.read() as conn:
        loaded = service._load(conn, _row(conn, product))
    loaded.checked_at = time.monotonic()
    return loaded


# --------------------------------------------------------------------------- audit and stats


def who(
    platform: Platform, viewer: Principal, keys: Mapping[str, str], product: str | None = None
) -> list[dict]:
    """Who verified the subject with these key values? (auditors, the authority)

    The subject keys of each product (``product`` or every product whose subject keys
    are all supplied) are hashed as at call time; the matching calls are checked
    against their ledger entries before they are listed.
    """
    require_role(viewer, Role.AUDITOR, Role.AUTHORITY, action="look up verifications")
    secret = load_secret(platform.home / "keys")
    with platform.store.read() as conn:
        stmt = select(verify_products)
        if product is not None:
            row = _row(conn, product)
            if viewer.role is Role.AUTHORITY:
                _authority_for(conn, viewer, row, "look up verifications")
            stmt = stmt.where(verify_products.c.name == product)
        scope = scope_of(conn, viewer)
        if scope is not None:  # a county authority: the products of its county only
            stmt = stmt.where(verify_products.c.name.in_(scope.verifications))
        hashes: set[str] = set()
        for row in conn.execute(stmt).all():
            definition = Definition.from_dict(json.loads(row.definition_json))
            rule = _admit(conn, platform, definition)
            names = [k.name for k in rule.subject_keys]
            if all(n in keys for n in names):
                values = tuple(caller_value(n, keys[n]) for n in names)
                hashes.add(subject_hash(secret, values))
        if not hashes:
            raise InputError(
                "the keys name no product's subject key"
                + (" among the products of your county" if scope is not None else "")
                + "; give e.g. pid or credit_code"
            )
        calls = select(verify_calls).where(verify_calls.c.subject_hash.in_(sorted(hashes)))
        if scope is not None:
            calls = calls.where(verify_calls.c.product.in_(scope.verifications))
        rows = conn.execute(calls.order_by(verify_calls.c.id)).all()
        entries: dict[int, dict] = {}
        out = []
        for r in rows:
            if r.ledger_seq not in entries:
                entries[r.ledger_seq] = _ledger_entry(conn, r.ledger_seq)
            entry = entries[r.ledger_seq]
            in_ledger = entry is not None and any(
                i.get("key_hash") == r.key_hash for i in entry["details"].get("items", [])
            )
            out.append(
                {
                    "ts": r.ts,
                    "product": r.product,
                    "consumer": by_id(conn, r.consumer_id).name,
                    "code": r.code,
                    "refused": r.refusal,
                    "consent": json.loads(r.consent_json) if r.consent_json else None,
                    "request_id": r.request_id,
                    "ledger_seq": r.ledger_seq,
                    "in_ledger": in_ledger,
                }
            )
    with platform.store.transaction() as conn:
        platform.record(
            conn,
            viewer.actor,
            "verify.who",
            "verification:audit",
            {"subject_hashes": sorted(hashes), "found": len(out)},
            "Art. 7",
        )
    return out


def _ledger_entry(conn: Connection, seq: int) -> dict | None:
    row = conn.execute(select(ledger_table).where(ledger_table.c.seq == seq)).first()
    if row is None:
        return None
    try:
        details = json.loads(row.details)
    except ValueError:
        details = {}
    return {"seq": row.seq, "action": row.action, "details": details}


def stats(platform: Platform, viewer: Principal, product: str) -> dict:
    """Counts only: calls, codes, refusals, consumers, and who is throttled or blocked."""
    with platform.store.read() as conn:
        row = _row(conn, product)
        if viewer.role is Role.OPERATOR and row.operator_id != viewer.id:
            raise NotFound(f"no verification product '{product}'")
        require_role(
            viewer, Role.OPERATOR, Role.AUTHORITY, Role.AUDITOR, action="read verification stats"
        )
        if viewer.role is Role.AUTHORITY:
            _authority_for(conn, viewer, row, "read verification stats")
        day = datetime.now(UTC).strftime("%Y-%m-%d")
        where = verify_calls.c.product == product
        codes = dict(
            conn.execute(
                select(verify_calls.c.code, func.count())
                .where(where & verify_calls.c.code.is_not(None))
                .group_by(verify_calls.c.code)
            ).all()
        )
        refused = dict(
            conn.execute(
                select(verify_calls.c.refusal, func.count())
                .where(where & verify_calls.c.refusal.is_not(None))
                .group_by(verify_calls.c.refusal)
            ).all()
        )
        per_consumer = {
            by_id(conn, cid).name: n
            for cid, n in conn.execute(
                select(verify_calls.c.consumer_id, func.count())
                .where(where)
                .group_by(verify_calls.c.consumer_id)
            ).all()
        }
        today = conn.execute(
            select(func.count()).where(where & (verify_calls.c.ts >= day))
        ).scalar_one()
        standing = [
            {"consumer": by_id(conn, s.consumer_id).name, "standing": s.status, "reason": s.reason}
            for s in conn.execute(select(verify_standing)).all()
            if s.status == Standing.BLOCKED or s.day == day
        ]
    return {
        "product": product,
        "state": row.status,
        "versions": json.loads(row.index_versions_json or "{}"),
        "subjects_answered": sum(codes.values()),
        "subjects_today": today,
        "codes": codes,
        "refused": refused,
        "consumers": per_consumer,
        "standing": standing,
    }


_SERVICES: dict[Path, VerificationService] = {}
_SERVICES_LOCK = threading.Lock()


def service_for(platform: Platform) -> VerificationService:
    """The process's service for this platform object (created on first use)."""
    with _SERVICES_LOCK:
        key = Path(platform.home).resolve()
        current = _SERVICES.get(key)
        if current is None or current.platform is not platform:
            if current is not None:
                current.close()
            current = _SERVICES[key] = VerificationService(platform)
        return current


def call(
    platform: Platform,
    consumer: Principal,
    product: str,
    items: Sequence[Mapping[str, Any]],
    consent: Mapping[str, Any] | None = None,
) -> CallResult:
    """In-process call (CLI, demo, tests): :meth:`VerificationService.call`."""
    return service_for(platform).call(consumer, product, items, consent)
