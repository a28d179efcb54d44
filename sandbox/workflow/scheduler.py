"""The platform's tick: what falls due with time alone (Art. 13, 16, 20, 21, 23).

:func:`tick` expires every agreement whose term has ended and carries out its disposal
clause (:func:`sandbox.registry.disposal.expire_due`), as the platform itself (the
ledger's actor ``platform``), then reminds operators of the usage reports their
agreements' schedules made due (:func:`sandbox.workflow.reporting.remind_due`), and
operators and authorities of the trainings, drills and evaluations due on them with
nothing on record (:func:`sandbox.workflow.schedules.remind_due`). The
server's job loop calls it every :data:`TICK_EVERY_S`; a host without a server runs
``sandbox tick`` (from cron, say). Both take the moment from the caller, so tests inject
the clock. Ticking twice does nothing more: an expired agreement is final, a disposal
runs once per product, and a reminder is sent once per agreement, duty and period.
"""

from __future__ import annotations

from datetime import datetime

from policies.errors import PermissionDenied
from sandbox.core.platform import Platform
from sandbox.core.principals import Principal, Role
from sandbox.registry.base import now_or
from sandbox.registry.disposal import expire_due
from sandbox.workflow import schedules
from sandbox.workflow.reporting import remind_due

TICK_EVERY_S = 60.0


def tick(platform: Platform, *, now: datetime | None = None, by: Principal | None = None) -> dict:
    """Expire what has come to its end; ``expired`` ids and ``disposed`` products by
    agreement. ``by``: an authority asking (within its jurisdiction); None: the platform."""
    if by is not None and by.role is not Role.AUTHORITY:
        raise PermissionDenied(
            f"{by.name} is a {by.role.value}; only the platform or an authority runs the "
            "tick that expires agreements (Art. 13)",
            article="Art. 13",
        )
    moment = now_or(now)
    disposed = expire_due(platform, by, now=moment)
    reminded = remind_due(platform, moment)
    duties = schedules.remind_due(platform, moment)
    return {"at": moment.isoformat(), "expired": sorted(disposed), "disposed": disposed,
            "reminded": [{"agreement": a, "period": p} for a, p in reminded],
            "duties_reminded": [{"agreement": a, "duty": d, "period": p}
                                for a, d, p in duties]}  # fmt: skip
