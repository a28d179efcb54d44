"""Applications (Art. 11): an operator answers a notice before its deadline.

It states the scenario, the datasets and columns it needs (within the notice),
the job and product kinds, its security measures, its named data-security
officer (Art. 20) and its incident-response plan (Art. 21). A late application,
one without officer or plan, or a second one of the same operator to the same notice,
is refused by name and is not stored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.access import JOB_KINDS
from policies.errors import InputError
from policies.suggest import did_you_mean
from policies.workflow import PRODUCT_KINDS, ApplicationState, NoticeState, refuse
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role, require_role
from sandbox.data.vault import get_version
from sandbox.registry.base import create, get, need_text, now_or, parse_time
from sandbox.registry.tables import applications, notices


def _check_kinds(values: Sequence[str], known: Sequence[str], what: str) -> list[str]:
    chosen = sorted(set(values))
    if not chosen:
        raise InputError(f"name at least one {what} (Art. 11)", article="Art. 11")
    for value in chosen:
        if value not in known:
            raise InputError(f"unknown {what} '{value}'; " + did_you_mean(value, known))
    return chosen


def apply(
    platform: Platform,
    operator: Principal,
    notice_id: int,
    *,
    scenario: str,
    datasets: Mapping[str, Sequence[str] | None],
    security_measures: str,
    security_officer: str,
    incident_plan: str,
    job_kinds: Sequence[str] = ("sql_aggregate",),
    product_kinds: Sequence[str] = ("report",),
    now: datetime | None = None,
) -> int:
    """Submit an application to a notice; returns its id."""
    require_role(operator, Role.OPERATOR, action="apply to notices", article="Art. 11")
    subject = f"notice:{notice_id}"
    _require_security_duties(security_officer, incident_plan, subject)
    need_text({"scenario": scenario, "security_measures": security_measures}, "Art. 11")
    kinds = _check_kinds(job_kinds, JOB_KINDS, "job kind")
    products = _check_kinds(product_kinds, PRODUCT_KINDS, "product kind")
    with platform.store.transaction() as conn:
        notice = _open_notice(conn, notice_id, operator, now, subject)
        in_scope = json.loads(notice.datasets_json)
        scope = _check_scope(conn, platform, datasets, in_scope, notice_id)
        return create(
            platform,
            conn,
            applications,
            "application",
            ApplicationState.SUBMITTED,
            operator.actor,
            {
                "notice_id": notice_id,
                "operator_id": operator.id,
                "scenario": scenario,
                "datasets_json": json.dumps(scope, sort_keys=True),
                "job_kinds_json": json.dumps(kinds),
                "product_kinds_json": json.dumps(products),
                "security_measures": security_measures,
                "security_officer": security_officer.strip(),
                "incident_plan": incident_plan,
            },
            {
                "notice": notice_id,
                "datasets": scope,
                "job_kinds": kinds,
                "product_kinds": products,
                "security_officer": security_officer.strip(),
            },
        )


def _check_scope(conn, platform, datasets, in_scope, notice_id) -> dict:
    if not datasets:
        raise InputError("an application names the datasets it needs (Art. 11)", article="Art. 11")
    scope: dict[str, list[str] | None] = {}
    for name, columns in datasets.items():
        if name not in in_scope:
            raise refuse(
                "outside_notice_scope",
                f"dataset '{name}' is not in the scope of notice {notice_id}",
                "Art. 10",
                name,
                "in scope: " + ", ".join(in_scope),
            )
        version = get_version(conn, platform, name)
        if columns is not None:
            known = version.classification.columns
            for column in columns:
                if column not in known:
                    raise InputError(
                        f"column '{column}' is not in dataset '{name}'; "
                        + did_you_mean(column, known)
                    )
            scope[name] = sorted(set(columns))
        else:
            scope[name] = None
    return scope


def application_dict(conn: Connection, application_id: int) -> dict:
    row = get(conn, applications, application_id, "application")
    return {
        "id": row.id,
        "notice": row.notice_id,
        "operator_id": row.operator_id,
        "scenario": row.scenario,
        "datasets": json.loads(row.datasets_json),
        "job_kinds": json.loads(row.job_kinds_json),
        "product_kinds": json.loads(row.product_kinds_json),
        "security_officer": row.security_officer,
        "status": row.status,
    }


def _require_security_duties(security_officer: str, incident_plan: str, subject: str) -> None:
    """An application names its data-security officer (Art. 20) and carries an
    incident-response plan (Art. 21)."""
    if not (security_officer or "").strip():
        raise refuse(
            "security_officer_required",
            "an application must name the operator's data-security officer",
            "Art. 20",
            subject,
            "pass --security-officer NAME",
        )
    if not (incident_plan or "").strip():
        raise refuse(
            "incident_plan_required",
            "an application must carry an incident-response plan",
            "Art. 21",
            subject,
            "pass --incident-plan FILE",
        )


def _open_notice(
    conn: Connection, notice_id: int, operator: Principal, now: datetime | None, subject: str
) -> Any:
    """The notice, if it still takes applications and this operator has none to it yet."""
    notice = get(conn, notices, notice_id, "notice")
    if NoticeState(notice.status) is not NoticeState.PUBLISHED:
        raise refuse("notice_closed", f"notice {notice_id} is closed", "Art. 11", subject)
    if now_or(now) >= parse_time(notice.deadline):
        raise refuse(
            "application_late",
            f"notice {notice_id} closed for applications at {notice.deadline}",
            "Art. 11",
            subject,
            "watch for the next notice",
        )
    earlier = conn.execute(
        select(applications.c.id, applications.c.status).where(
            applications.c.notice_id == notice_id,
            applications.c.operator_id == operator.id,
        )
    ).first()
    if earlier is not None:
        raise refuse(
            "duplicate_application",
            f"you applied to notice {notice_id} already (application {earlier.id}, "
            f"{earlier.status}); one application per operator and notice",
            "Art. 11",
            subject,
            "follow that application, or answer the next notice",
        )
    return notice
