"""Pulling a registered source again: on demand (``dataset refresh``) or daily on a schedule.

A refresh registers the dataset again from the source it was registered from
(:mod:`sandbox.data.kept_sources`), with its latest version's classification, through
:func:`sandbox.data.vault.register`: unchanged data (the same snapshot hash) keeps the
version, changed data makes version n+1. Every pull is ledgered, ``dataset.refresh``
(changed or unchanged, and what started it: ``manual`` or ``schedule``) or
``dataset.refresh_failed`` (the error's message, which never shows a password or a
value); a failed pull leaves the latest version as it was, and the dataset's source
row keeps the last status and error, which ``dataset sources`` shows its provider.
On demand, the failure is also the command's error; on a schedule, the provider finds
it in the inbox too (``source.refresh_failed``, :mod:`sandbox.registry.inbox`).

A schedule is a daily time, ``HH:MM`` in :data:`TIMEZONE`. :func:`run_due` pulls every
source whose time has come today and that has not been pulled by its schedule today;
it takes the time as an argument (the server's loop passes the clock, tests their own).
Each day's pull is claimed in the store first, so two server processes never both pull
it; a pull that fails is tried again the next day, not in a loop.

Known shortcut: a database table read without ``ORDER BY`` may come back in another
row order, which is another snapshot: a new version of the same rows. Give the source
``?query=SELECT ... ORDER BY key`` to keep the version of unchanged data.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from policies.errors import AuthError, InputError, PermissionDenied, SandboxError
from sandbox.core.ledger import SYSTEM, now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, by_id, require_active, require_role
from sandbox.core.store import datasets
from sandbox.data.kept_sources import kept_uri
from sandbox.data.tables import dataset_sources
from sandbox.data.vault import get_version, register

TIMEZONE = "Asia/Shanghai"
_TIME = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")
log = logging.getLogger("sandbox.data.refresh")


def source_of(conn, platform: Platform, provider: Principal, name: str):
    """The dataset row and its kept source row, for its own provider only."""
    get_version(conn, platform, name)  # NotFound with a "did you mean"
    ds = conn.execute(select(datasets).where(datasets.c.name == name)).first()
    if provider.role is Role.PROVIDER and ds.provider_id != provider.id:
        raise PermissionDenied(
            f"dataset '{name}' belongs to another provider (Art. 14)", article="Art. 14"
        )
    row = conn.execute(select(dataset_sources).where(dataset_sources.c.dataset_id == ds.id)).first()
    if row is None or kept_uri(platform, name) is None:
        raise InputError(
            f"dataset '{name}' has no source the platform can read again (it was uploaded); "
            "register it from a file path or a database URI to refresh it"
        )
    return ds, row


def refresh(
    platform: Platform, provider: Principal, name: str, *, trigger: str = "manual"
) -> dict[str, Any]:
    """Pull dataset ``name`` from its source again; dataset, version, changed, rows, sha256."""
    require_role(provider, Role.PROVIDER, action="refresh datasets", article="Art. 14")
    with platform.store.read() as conn:
        ds, _row = source_of(conn, platform, provider, name)
        latest = get_version(conn, platform, name)
    uri = kept_uri(platform, name)
    assert uri is not None  # source_of checked it
    try:
        result = register(platform, provider, name, uri, latest.classification)
    except SandboxError as exc:
        _record(platform, provider, ds.id, name, trigger, "failed", latest.version, exc.message)
        message = f"refresh of '{name}' failed, version {latest.version} stays: {exc.message}"
        exc.message, exc.args = message, (message,)
        raise
    status = "changed" if result.changed else "unchanged"
    _record(platform, provider, ds.id, name, trigger, status, result.version.version, None)
    return {**result.summary(), "trigger": trigger}


def _record(
    platform: Platform,
    provider: Principal,
    dataset_id: int,
    name: str,
    trigger: str,
    status: str,
    version: int,
    error: str | None,
) -> None:
    """The pull's ledger entry and the source row's last status, in one transaction."""
    with platform.store.transaction() as conn:
        conn.execute(
            dataset_sources.update()
            .where(dataset_sources.c.dataset_id == dataset_id)
            .values(last_pull_at=now_utc(), last_status=status, last_error=error)
        )
        details: dict[str, Any] = {"trigger": trigger, "status": status, "version": version}
        if error is not None:
            details["error"] = error
        action = "dataset.refresh_failed" if error is not None else "dataset.refresh"
        platform.record(conn, provider.actor, action, f"dataset:{name}", details, "Art. 14")
        if error is not None and trigger == "schedule":  # nobody is there to see the error
            from sandbox.registry.inbox import notify

            notify(platform, conn, SYSTEM, provider.id, "source.refresh_failed",
                   f"dataset:{name}", details, "Art. 14")  # fmt: skip


def set_schedule(
    platform: Platform, provider: Principal, name: str, daily_at: str | None
) -> dict[str, Any]:
    """Pull ``name`` every day at ``daily_at`` (``HH:MM``, Asia/Shanghai); None: no schedule."""
    require_role(provider, Role.PROVIDER, action="schedule refreshes", article="Art. 14")
    if daily_at is not None and not _TIME.fullmatch(daily_at.strip()):
        raise InputError(f"daily time '{daily_at}': write it as HH:MM, 00:00 to 23:59 ({TIMEZONE})")
    daily_at = daily_at.strip() if daily_at is not None else None
    with platform.store.transaction() as conn:
        ds, _row = source_of(conn, platform, provider, name)
        conn.execute(
            dataset_sources.update()
            .where(dataset_sources.c.dataset_id == ds.id)
            .values(daily_at=daily_at, updated_at=now_utc())
        )
        platform.record(
            conn,
            provider.actor,
            "dataset.schedule",
            f"dataset:{name}",
            {"daily_at": daily_at, "timezone": TIMEZONE},
            "Art. 14",
        )
    return {"dataset": name, "daily_at": daily_at, "timezone": TIMEZONE}


def list_sources(platform: Platform, provider: Principal) -> list[dict[str, Any]]:
    """The provider's datasets that can be pulled again: source (redacted), schedule, last pull."""
    require_role(provider, Role.PROVIDER, action="list their sources", article="Art. 14")
    with platform.store.read() as conn:
        rows = conn.execute(
            select(datasets.c.name, dataset_sources)
            .join(dataset_sources, dataset_sources.c.dataset_id == datasets.c.id)
            .where(datasets.c.provider_id == provider.id)
            .order_by(datasets.c.name)
        ).all()
    return [
        {
            "dataset": r.name,
            "source": r.source,
            "daily_at": r.daily_at,
            "timezone": TIMEZONE,
            "last_pull_at": r.last_pull_at,
            "last_status": r.last_status,
            "last_error": r.last_error,
        }
        for r in rows
    ]


def run_due(platform: Platform, now: dt.datetime) -> list[dict[str, Any]]:
    """Pull every scheduled source whose daily time has come on ``now``'s date in
    :data:`TIMEZONE` and that its schedule has not pulled that day; one result each
    (``error`` set for a failed pull). ``now`` must carry its time zone."""
    if now.tzinfo is None:
        raise ValueError("run_due needs an aware datetime (with its time zone)")
    local = now.astimezone(ZoneInfo(TIMEZONE))
    today, clock = local.date().isoformat(), local.strftime("%H:%M")
    with platform.store.read() as conn:
        due = conn.execute(
            select(datasets.c.name, datasets.c.provider_id, dataset_sources.c.dataset_id)
            .join(dataset_sources, dataset_sources.c.dataset_id == datasets.c.id)
            .where(dataset_sources.c.daily_at.is_not(None))
            .where(dataset_sources.c.daily_at <= clock)
            .where(
                (dataset_sources.c.last_fired_on.is_(None))
                | (dataset_sources.c.last_fired_on != today)
            )
            .order_by(datasets.c.name)
        ).all()
    results = []
    for row in due:
        if not _claim(platform, row.dataset_id, today):
            continue  # another server process took today's pull
        results.append(_pull_scheduled(platform, row.name, row.provider_id))
    return results


def _claim(platform: Platform, dataset_id: int, today: str) -> bool:
    with platform.store.transaction() as conn:
        claimed = conn.execute(
            dataset_sources.update()
            .where(dataset_sources.c.dataset_id == dataset_id)
            .where(
                (dataset_sources.c.last_fired_on.is_(None))
                | (dataset_sources.c.last_fired_on != today)
            )
            .values(last_fired_on=today)
        )
        return claimed.rowcount == 1


def _pull_scheduled(platform: Platform, name: str, provider_id: int) -> dict[str, Any]:
    with platform.store.read() as conn:
        provider = by_id(conn, provider_id)
        active = provider_is_active(conn, provider_id)
    if not active:
        message = f"the provider of '{name}' is deactivated: its scheduled pull is skipped"
        with platform.store.transaction() as conn:
            platform.record(conn, SYSTEM, "dataset.refresh_skipped", f"dataset:{name}",
                            {"trigger": "schedule", "reason": "provider deactivated"}, "Art. 14")  # fmt: skip
        return {"dataset": name, "trigger": "schedule", "error": message}
    try:
        return refresh(platform, provider, name, trigger="schedule")
    except SandboxError as exc:  # ledgered and kept on the source row by refresh
        return {"dataset": name, "trigger": "schedule", "error": exc.message}
    except Exception as exc:  # noqa: BLE001 - one source's failure must not stop the others
        log.exception("scheduled refresh of %s failed", name)
        return {"dataset": name, "trigger": "schedule", "error": type(exc).__name__}


def provider_is_active(conn, provider_id: int) -> bool:
    try:
        require_active(conn, provider_id)
    except AuthError:
        return False
    return True
