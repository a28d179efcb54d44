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

An auditor asks "who verified this subject?" (:func:`sandbox.verification.audit.who`) with the subject's key,
hashed the same way.
"""

from __future__ import annotations

import json
import secrets as _secrets
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from policies.errors import InputError, NotFound, PolicyRefusal, SandboxError
from policies.verification import (
    AdmittedRule,
    Consent,
    Definition,
    ProductState,
)
from sandbox.core.ledger import SYSTEM, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, require_role
from sandbox.core.store import dataset_versions, datasets
from sandbox.data.grants import may_run
from sandbox.verification.commit import GroupCommitter
from sandbox.verification.index import IndexReader, build
from sandbox.verification.keys import (
    caller_value,
    check_hash,
    key_hash,
    load_secret,
    normalise_key,
    subject_hash,
    value_hash,
)
from sandbox.verification.products import (
    FRESHNESS_S,
    KIND,
    MAX_BATCH,
    PRODUCTS,
    admit_definition,
    latest_versions,
    product_row,
)
from sandbox.verification.record import CallResult, CallUnit, Item, Limits, Loaded
from sandbox.verification.tables import (
    verify_products,
)
from sandbox.verification.withdrawal import cause_of, withdraw


class VerificationService:
    """One per process: the secret, the loaded indexes and the group committer."""

    def __init__(self, platform: Platform):
        self.platform = platform
        self.secret = load_secret(platform.home / "keys")
        self.limits = Limits.of(platform)
        self.unit = CallUnit(platform, self.limits)
        self.committer = GroupCommitter(
            platform.store.engine, platform.settings.verify.commit_interval_ms / 1000.0
        )
        self._loaded: dict[str, Loaded] = {}
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()

    def close(self) -> None:
        self.committer.close()

    # -- the product, checked at call time
    def _load(self, conn: Connection, row) -> Loaded:
        loaded = self._loaded.get(row.name)
        if loaded is not None and loaded.index_path == row.index_path:
            return loaded
        definition = Definition.from_dict(json.loads(row.definition_json))
        rule = admit_definition(conn, self.platform, definition)
        reader = IndexReader(
            self.platform.home / row.index_path,
            definition.name,
            definition.codes,
            len(rule.check_keys),
        )
        loaded = Loaded(
            row.name, definition, rule, reader, json.loads(row.index_versions_json), row.index_path
        )
        with self._lock:
            self._loaded[row.name] = loaded
        return loaded

    def _ready(self, product: str) -> Loaded:
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
            except PolicyRefusal:
                cause = None
                if row.status == ProductState.PUBLISHED:
                    columns = loaded.rule.columns if loaded else None
                    cause = cause_of(conn, operator.id, row.agreement_id, tables, KIND, columns)
                if cause is not None:
                    withdraw(self.platform, PRODUCTS, product, cause)
                raise
            if row.status == ProductState.WITHDRAWN:
                raise PolicyRefusal(
                    "product_withdrawn",
                    f"verification product '{product}' was withdrawn",
                    article="Art. 24",
                    subject=product,
                    hint="the authority may publish it again once the agreement is active",
                )
            # published, so its index was built when it was published
            assert loaded is not None
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

    def _rebuild(self, product: str) -> Loaded:
        with self._build_lock:
            loaded = refresh(self.platform, product, service=self)
        if loaded is None:  # withdrawn while its index was being rebuilt
            raise NotFound(f"no published verification product '{product}'")
        return loaded

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
            lambda conn: self.unit.record(conn, consumer, loaded, request_id, prepared)
        )
        if isinstance(outcome, SandboxError):
            raise outcome
        return outcome

    def _prepare(self, loaded: Loaded, item: Mapping, consent: Mapping | None) -> Item:
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
        code, held = loaded.reader.answer(self.secret, subject, checks)
        name = loaded.name
        return Item(
            subject=subject,
            checks=checks,
            subject_hash=subject_hash(self.secret, subject),
            key_hash=key_hash(self.secret, name, subject + checks),
            check_hash=check_hash(self.secret, name, checks) if checks else None,
            consent=parsed,
            code=code,
            values=self._values(rule, subject, checks, parsed),
            missed=code in loaded.definition.miss_codes or not held,
        )

    def _values(
        self,
        rule: AdmittedRule,
        subject: tuple[str, ...],
        checks: tuple[str, ...],
        consent: Consent | None,
    ) -> tuple[tuple[str, str, bool], ...]:
        """Each input value's field, keyed hash (the same in every product) and whether it
        is a subject key; the consent reference too. One entry per distinct value."""
        named = [(k.name, v, True) for k, v in zip(rule.subject_keys, subject, strict=True)]
        named += [(k.name, v, False) for k, v in zip(rule.check_keys, checks, strict=True)]
        out: dict[str, tuple[str, str, bool]] = {}
        for field, value, is_subject in named:
            key = value_hash(self.secret, "key", value)
            if key not in out or is_subject:
                out[key] = (field, key, is_subject)
        if consent is not None:
            key = value_hash(self.secret, "consent", normalise_key(consent.reference))
            out.setdefault(key, ("consent.reference", key, False))
        return tuple(out.values())


def refresh(
    platform: Platform, product: str, service: VerificationService | None = None
) -> Loaded | None:
    """Rebuild the index if a dataset of the product has a newer version (ledgered)."""
    secret = load_secret(platform.home / "keys")
    with platform.store.read() as conn:
        row = product_row(conn, product)
        if row.status != ProductState.PUBLISHED:
            return None
        definition = Definition.from_dict(json.loads(row.definition_json))
        rule = admit_definition(conn, platform, definition)
        versions = latest_versions(conn, platform, rule.tables, row.agreement_id)
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
        loaded = service._load(conn, product_row(conn, product))
    loaded.checked_at = time.monotonic()
    return loaded


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
