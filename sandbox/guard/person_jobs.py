"""The quarterly cap on table-mode person jobs, per agreement (issue 17, item 5).

An exact table about persons falls outside any epsilon: what it discloses is
bounded by the output rules and the two output checkers, not by a budget. So the
number of such jobs is capped per agreement per calendar quarter (UTC), setting
``review.person_jobs_per_quarter``. The cap is checked, and the job counted, in
the transaction that queues it, so two submissions cannot both take the last
place; a job refused for any reason before that is not counted. Jobs under an
authority's direct grant (no agreement) are counted per operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from policies.access import Grant
from policies.errors import PolicyRefusal
from sandbox.guard.tables import person_jobs

ARTICLE = "Art. 15"
RULE = "person_jobs_per_quarter"


def quarter_of(moment: datetime) -> str:
    """``2026Q4`` for any moment of October to December 2026 (UTC)."""
    return f"{moment.year}Q{(moment.month - 1) // 3 + 1}"


def _agreement(used: Mapping[str, Grant]) -> int | None:
    """The agreement the job runs under: the first table's grant's (one job, one agreement)."""
    for grant in used.values():
        if grant.agreement_id is not None:
            return grant.agreement_id
    return None


def reserve(
    conn: Connection,
    job_id: int,
    operator_id: int,
    used: Mapping[str, Grant],
    cap: int,
    now: datetime,
) -> None:
    """Count ``job_id`` against its agreement's quarter, or raise the cap's refusal."""
    agreement = _agreement(used)
    quarter = quarter_of(now)
    where = [person_jobs.c.quarter == quarter]
    if agreement is None:
        where += [person_jobs.c.agreement_id.is_(None), person_jobs.c.operator_id == operator_id]
        whose = "this operator's direct grants"
    else:
        where.append(person_jobs.c.agreement_id == agreement)
        whose = f"agreement {agreement}"
    used_so_far = conn.execute(select(func.count()).select_from(person_jobs).where(*where)).scalar()
    if int(used_so_far or 0) >= cap:
        raise PolicyRefusal(
            RULE,
            f"{whose} has run {used_so_far} of its {cap} person jobs in table mode this quarter "
            f"({quarter})",
            article=ARTICLE,
            subject=f"agreement:{agreement}" if agreement is not None else "operator",
            hint="exact tables about persons are capped per quarter "
            "(review.person_jobs_per_quarter); ask the authority, or wait for the next quarter",
        )
    conn.execute(
        person_jobs.insert().values(
            job_id=job_id, agreement_id=agreement, operator_id=operator_id, quarter=quarter
        )
    )
