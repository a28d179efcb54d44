"""Who may read an application (Art. 11, 12): one rule for the CLI and the API.

A notice is a public call (Art. 10), so any principal reads it through
:func:`sandbox.workflow.notices.notice_dict`. An application is not: it carries
the operator's security measures and its incident-response plan, which only
those who decide on it need. So it is shown to

* the applicant itself (another operator is told there is none, as with
  agreements, so applications cannot be enumerated);
* an authority whose jurisdiction covers the notice (Art. 5);
* the reviewers appointed to it (they score security, so they read the measures);
* auditors, who read everything and change nothing.

Providers and consumers are refused by name.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection

from policies.errors import NotFound, PermissionDenied
from sandbox.core.principals import Principal, Role, by_id
from sandbox.registry.base import get, require_authority
from sandbox.registry.tables import applications, notices, review_appointments
from sandbox.workflow.applications import application_dict


def application_for(conn: Connection, viewer: Principal, application_id: int) -> dict:
    """The application with its security measures and plan, if ``viewer`` may read it."""
    row = conn.execute(select(applications).where(applications.c.id == application_id)).first()
    if row is None or (viewer.role is Role.OPERATOR and row.operator_id != viewer.id):
        raise NotFound(f"no application {application_id} that you may read")
    if viewer.role is Role.AUTHORITY:
        notice = get(conn, notices, row.notice_id, "notice")
        require_authority(viewer, notice.jurisdiction, "read applications", "Art. 12")
    elif viewer.role is Role.REVIEWER:
        appointed = conn.execute(
            select(review_appointments.c.id).where(
                review_appointments.c.application_id == application_id,
                review_appointments.c.reviewer_id == viewer.id,
            )
        ).first()
        if appointed is None:
            raise PermissionDenied(
                f"{viewer.name} is not appointed to review application {application_id} (Art. 12)",
                article="Art. 12",
            )
    elif viewer.role not in (Role.OPERATOR, Role.AUDITOR):
        raise PermissionDenied(
            f"a {viewer.role.value} may not read applications (Art. 12)", article="Art. 12"
        )
    return {
        **application_dict(conn, application_id),
        "operator": by_id(conn, row.operator_id).name,
        "security_measures": row.security_measures,
        "incident_plan": row.incident_plan,
    }
