"""Notices (Art. 10): an authority calls for operators in a domain or scenario.

A notice names the datasets in scope, the conditions, the deadline for
applications (Art. 11) and the qualification pass rule (Art. 12). A county
authority publishes only within its own county (Art. 5); the city authority
may publish city-wide or for any county.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.engine import Connection

from policies.errors import InputError
from policies.workflow import NoticeState, PassRule
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal
from sandbox.registry.base import (
    create,
    dataset_row,
    get,
    names,
    need_text,
    now_or,
    parse_time,
    require_authority,
)
from sandbox.registry.tables import notices


def publish(
    platform: Platform,
    authority: Principal,
    *,
    title: str,
    domain: str,
    scenario: str,
    datasets: Sequence[str],
    conditions: str,
    deadline: str | datetime,
    jurisdiction: str | None = None,
    pass_rule: PassRule | None = None,
    now: datetime | None = None,
) -> int:
    """Publish a notice; returns its id."""
    pass_rule = pass_rule or PassRule()
    target = jurisdiction or authority.jurisdiction or "city"
    require_authority(authority, target, "publish notices", "Art. 10")
    need_text({"title": title, "domain": domain, "scenario": scenario}, "Art. 10")
    wanted = names(datasets)
    if not wanted:
        raise InputError(
            "a notice names at least one dataset in scope (Art. 10)", article="Art. 10"
        )
    closes = parse_time(deadline, "deadline", end=True)
    if closes <= now_or(now):
        raise InputError("the notice's deadline must be in the future (Art. 11)", article="Art. 11")
    with platform.store.transaction() as conn:
        for name in wanted:
            dataset_row(conn, name)
        return create(
            platform,
            conn,
            notices,
            "notice",
            NoticeState.PUBLISHED,
            authority.actor,
            {
                "title": title,
                "domain": domain,
                "scenario": scenario,
                "jurisdiction": target,
                "datasets_json": json.dumps(wanted),
                "conditions": conditions or "",
                "deadline": closes.isoformat(),
                "pass_rule_json": json.dumps(pass_rule.to_dict()),
                "published_by": authority.id,
            },
            {
                "title": title,
                "jurisdiction": target,
                "datasets": wanted,
                "deadline": closes.isoformat(),
                "pass_rule": pass_rule.to_dict(),
            },
        )


def notice_dict(conn: Connection, notice_id: int) -> dict:
    row = get(conn, notices, notice_id, "notice")
    return {
        "id": row.id,
        "title": row.title,
        "domain": row.domain,
        "scenario": row.scenario,
        "jurisdiction": row.jurisdiction,
        "datasets": json.loads(row.datasets_json),
        "conditions": row.conditions,
        "deadline": row.deadline,
        "pass_rule": json.loads(row.pass_rule_json),
        "status": row.status,
    }
