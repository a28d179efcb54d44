"""Answers counted per value of each input field across all consumers, in the store.

The rules are :mod:`policies.verification.values`. Inside a call's unit of the group
commit (under the store's write lock, so exact across server processes) a
:class:`Tally` reads each value's answers in the rolling hour, the rolling day and, for
a subject key, ever, and refuses an item that would go over; :meth:`ValueGuard.record`
then writes the answered items' counts and which consumers tried each value, and alerts
the authority (a ``verify.alert`` ledger entry and a ``verification_alert`` notification,
the enumeration defence's own mechanism) when ``verify.alert_accounts`` consumers tried
one value within a day. Values are keyed hashes (:func:`sandbox.verification.keys.value_hash`);
the tables never hold a value.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Connection

from policies.verification import ValueCounts, ValueLimits, alert_due, judge
from policies.verification.values import (
    DAY_BUCKET_S,
    DAY_BUCKETS,
    HOUR_BUCKET_S,
    HOUR_BUCKETS,
)
from sandbox.core.ledger import SYSTEM
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, by_id
from sandbox.core.store import insert_or
from sandbox.verification.products import product_row
from sandbox.verification.tables import (
    verify_value_accounts,
    verify_value_alerts,
    verify_value_counts,
)

MAX_NAMES = 20  # consumers named in one alert

# One item's input values: (field, keyed hash of the value, is a subject key) each
# (sandbox.verification.record.Item.values).
Values = tuple[tuple[str, str, bool], ...]


class Tally:
    """One call's view of the counts: each value's counts read once, plus the answers this
    call has already admitted."""

    def __init__(self, conn: Connection, limits: ValueLimits, epoch: int):
        self.conn = conn
        self.limits = limits
        self.epoch = epoch
        self._base: dict[str, tuple[int, int, int]] = {}
        self._added: dict[str, int] = {}

    def _read(self, key: str) -> tuple[int, int, int]:
        base = self._base.get(key)
        if base is None:
            c = verify_value_counts.c
            rows = self.conn.execute(
                select(c.span, func.sum(c.n))
                .where(
                    and_(
                        c.value_hash == key,
                        or_(
                            and_(
                                c.span == "5m",
                                c.bucket > self.epoch // HOUR_BUCKET_S - HOUR_BUCKETS,
                            ),
                            and_(
                                c.span == "1h", c.bucket > self.epoch // DAY_BUCKET_S - DAY_BUCKETS
                            ),
                            c.span == "life",
                        ),
                    )
                )
                .group_by(c.span)
            ).all()
            spans = {span: int(n or 0) for span, n in rows}
            base = self._base[key] = (spans.get("5m", 0), spans.get("1h", 0), spans.get("life", 0))
        return base

    def refusal(self, values: Values) -> tuple[str, str] | None:
        """The rule and message refusing an item with these values, or None (then it
        counts as admitted)."""
        for field, key, subject in values:
            hour, day, life = self._read(key)
            extra = self._added.get(key, 0)
            counts = ValueCounts(hour + extra, day + extra, life + extra if subject else None)
            verdict = judge(field, counts, self.limits)
            if verdict is not None:
                return verdict
        for _field, key, _subject in values:
            self._added[key] = self._added.get(key, 0) + 1
        return None


class ValueGuard:
    """The counts per value: the limits' check (:meth:`tally`) and the writes (:meth:`record`)."""

    def __init__(self, platform: Platform, limits: ValueLimits):
        self.platform = platform
        self.limits = limits

    def tally(self, conn: Connection, epoch: int) -> Tally:
        return Tally(conn, self.limits, epoch)

    def record(
        self,
        conn: Connection,
        consumer: Principal,
        product: str,
        request_id: str,
        tried: Sequence[Values],
        answered: Sequence[Values],
        epoch: int,
    ) -> None:
        """Count the answered items' values, note that this consumer tried every value of
        the call (answered or refused), and alert on values several consumers tried."""
        _count(conn, answered, epoch)
        hour = epoch // DAY_BUCKET_S
        fields: dict[str, str] = {}
        for values in tried:
            for field, key, _subject in values:
                fields.setdefault(key, field)
        for key in fields:
            conn.execute(
                insert_or(conn, verify_value_accounts)
                .values(value_hash=key, consumer_id=consumer.id, hour=hour)
                .on_conflict_do_update(
                    index_elements=["value_hash", "consumer_id"], set_={"hour": hour}
                )
            )
        for key, field in fields.items():
            self._maybe_alert(conn, product, request_id, key, field, hour)

    def _maybe_alert(
        self, conn: Connection, product: str, request_id: str, key: str, field: str, hour: int
    ) -> None:
        a = verify_value_accounts.c
        since = hour - DAY_BUCKETS
        recent = and_(a.value_hash == key, a.hour > since)
        accounts = conn.execute(select(func.count()).where(recent)).scalar_one()
        if not alert_due(accounts, self.limits):
            return
        last = conn.execute(
            select(verify_value_alerts.c.hour).where(verify_value_alerts.c.value_hash == key)
        ).scalar()
        if last is not None and last > since:
            return  # alerted within the day already
        conn.execute(
            insert_or(conn, verify_value_alerts)
            .values(value_hash=key, hour=hour, accounts=accounts)
            .on_conflict_do_update(
                index_elements=["value_hash"], set_={"hour": hour, "accounts": accounts}
            )
        )
        ids = conn.execute(select(a.consumer_id).where(recent).order_by(a.consumer_id)).scalars()
        names = [by_id(conn, cid).name for cid in list(ids)[:MAX_NAMES]]
        details = {
            "kind": "value_tried_by_accounts",
            "field": field,
            "value_hash": key,
            "accounts": accounts,
            "consumers": names,
            "reason": f"{accounts} different consumers tried one value of '{field}' within a day",
            "product": product,
            "request_id": request_id,
        }
        self.alert(conn, product, details)

    def alert(self, conn: Connection, product: str, details: dict) -> None:
        """Tell the authority (a scoring service's unit tells its own)."""
        _alert(self.platform, conn, product, details)


def _count(conn: Connection, answered: Iterable[Values], epoch: int) -> None:
    """Add the answered items to their values' buckets and prune buckets out of window."""
    adds: dict[tuple[str, str, int], int] = {}
    keys: set[str] = set()
    for values in answered:
        for _field, key, subject in values:
            keys.add(key)
            spans = [("5m", epoch // HOUR_BUCKET_S), ("1h", epoch // DAY_BUCKET_S)]
            if subject:
                spans.append(("life", 0))
            for span, bucket in spans:
                adds[(key, span, bucket)] = adds.get((key, span, bucket), 0) + 1
    c = verify_value_counts.c
    for (key, span, bucket), n in adds.items():
        conn.execute(
            insert_or(conn, verify_value_counts)
            .values(value_hash=key, span=span, bucket=bucket, n=n)
            .on_conflict_do_update(
                index_elements=["value_hash", "span", "bucket"], set_={"n": c.n + n}
            )
        )
    for key in keys:
        conn.execute(
            verify_value_counts.delete().where(
                and_(
                    c.value_hash == key,
                    or_(
                        and_(c.span == "5m", c.bucket <= epoch // HOUR_BUCKET_S - HOUR_BUCKETS),
                        and_(c.span == "1h", c.bucket <= epoch // DAY_BUCKET_S - DAY_BUCKETS),
                    ),
                )
            )
        )


def _alert(platform: Platform, conn: Connection, product: str, details: dict) -> None:
    """A ``verify.alert`` ledger entry and a ``verification_alert`` notification to the
    authority that approved the product (as the enumeration defence's alerts)."""
    from sandbox.workflow.supervision import notify

    subject = f"verification:{product}"
    platform.record(conn, SYSTEM, "verify.alert", subject, details, "Art. 19")
    recipient = product_row(conn, product).approved_by
    if recipient is not None:
        notify(platform, conn, SYSTEM, recipient, "verification_alert", subject, details, "Art. 19")
