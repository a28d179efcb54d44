"""An agreement's terms as the job gate reads them (Art. 13, 14, 24).

:func:`terms_of` turns agreement rows into :class:`policies.access.AgreementTerms`
(state, term, datasets with their columns, job kinds) for
:func:`sandbox.data.grants.may_run`. It reads the store only, so the gate does not
depend on the agreements' lifecycle (:mod:`sandbox.workflow.agreements`), which in
turn cancels jobs and freezes held outputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.engine import Connection, Row

from policies.access import AgreementTerms
from policies.workflow import AgreementState
from sandbox.registry.base import parse_time
from sandbox.registry.tables import agreements


def terms_from_row(row: Row) -> AgreementTerms:
    scope = json.loads(row.scope_json)
    return AgreementTerms(
        id=row.id,
        state=AgreementState(row.status),
        valid_from=parse_time(row.valid_from),
        valid_until=parse_time(row.valid_until),
        datasets={
            name: frozenset(cols) if cols is not None else None
            for name, cols in scope["datasets"].items()
        },
        job_kinds=frozenset(scope["job_kinds"]),
    )


def terms_of(conn: Connection, agreement_ids: Iterable[int | None]) -> dict[int, AgreementTerms]:
    """The terms of each named agreement (None ids are skipped)."""
    ids = sorted({i for i in agreement_ids if i is not None})
    if not ids:
        return {}
    rows = conn.execute(select(agreements).where(agreements.c.id.in_(ids))).all()
    return {r.id: terms_from_row(r) for r in rows}
