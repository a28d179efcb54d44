"""The disposal clause for verification products (Art. 13): an index is a derived product.

When the agreement a verification product was made under has ended (expired or
terminated), :func:`dispose_indexes` carries out the agreement's disposal clause on
the product's index: ``delete`` removes every index file built for it and withdraws a
published product (``verify.withdrawn``, then ``verify.index_deleted`` in the ledger);
``hand_over`` leaves the index in the signing authority's custody, withdrawn, so no
call is answered from it. Idempotent: a deleted index leaves ``index_path`` empty, so
the next run finds nothing to do. The platform's tick
(:func:`sandbox.workflow.scheduler.tick`) runs before it, and both run from the
server's loop and ``sandbox tick``.
"""

from __future__ import annotations

import re

from sqlalchemy import select

from policies.verification.common import ProductState
from policies.workflow import AgreementState, Disposal
from sandbox.core.ledger import SYSTEM, Actor
from sandbox.core.platform import Platform
from sandbox.registry.tables import agreements
from sandbox.verification.index import FOLDER
from sandbox.verification.products import move_product
from sandbox.verification.tables import verify_products
from sandbox.verification.withdrawal import stopping_event

ENDED = (AgreementState.EXPIRED.value, AgreementState.TERMINATED.value)


def dispose_indexes(platform: Platform, actor: Actor = SYSTEM) -> list[str]:
    """Delete the indexes of verification products whose agreement ended with a ``delete``
    clause, and withdraw those still published; the names of the products disposed."""
    done = []
    with platform.store.transaction() as conn:
        rows = conn.execute(
            select(verify_products, agreements.c.disposal, agreements.c.status.label("ended"))
            .join(agreements, agreements.c.id == verify_products.c.agreement_id)
            .where(agreements.c.status.in_(ENDED))
            .order_by(verify_products.c.name)
        ).all()
        for row in rows:
            published = row.status == ProductState.PUBLISHED.value
            if published:
                reason = {"agreement": row.agreement_id, "reason": f"agreement {row.ended}",
                          "event": stopping_event(conn, f"agreement_{row.ended}",
                                                  row.agreement_id, [])}  # fmt: skip
                move_product(platform, conn, row.name, ProductState.WITHDRAWN, actor, reason,
                             "Art. 13")  # fmt: skip
            if row.disposal != Disposal.DELETE.value or row.index_path is None:
                continue
            files = [
                path
                for path in sorted((platform.home / FOLDER).glob(f"{row.name}-*.sqlite"))
                if re.fullmatch(re.escape(row.name) + r"-[0-9a-f]{16}", path.stem)
            ]
            for path in files:
                path.unlink(missing_ok=True)
            conn.execute(
                verify_products.update()
                .where(verify_products.c.name == row.name)
                .values(index_path=None)
            )
            platform.record(
                conn,
                actor,
                "verify.index_deleted",
                f"verification:{row.name}",
                {"agreement": row.agreement_id, "files": len(files)},
                "Art. 13",
            )
            done.append(row.name)
    return done
