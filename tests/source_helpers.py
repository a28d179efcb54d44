"""A registered source through to a released job: the path every source kind must take.

Real parts only: the vault registers the source, the authority grants an operator its
use, the job service runs a count by county, and the product's file is read back.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from policies.classes import Classification
from sandbox.core.principals import Role, by_name
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState


def read_all(source) -> tuple[pa.Table, list[int]]:
    """Every row of an open source, and the size of each batch it gave; closes it."""
    with source:
        batches = list(source.batches())
    return pa.Table.from_batches(batches, schema=source.schema), [b.num_rows for b in batches]


def release_counts(platform, provider, make_principal, name: str, uri: str, classes: dict) -> dict:
    """Register ``uri`` as ``name``, run ``COUNT(*) GROUP BY county`` on it, return the
    released counts (county -> n); fails the test unless the job is released."""
    vault.register(platform, provider, name, uri, Classification.from_dict(classes))
    authority = make_principal("city", Role.AUTHORITY, jurisdiction="city")[0]
    make_principal("bank", Role.OPERATOR)
    add_grant(platform, authority, "bank", name, until="2099-01-01")
    service = JobService(platform, spare=False)
    try:
        with platform.store.read() as conn:
            bank = by_name(conn, "bank")
        sql = f"SELECT county, COUNT(*) AS n FROM {name} GROUP BY county"
        outcome = service.submit(bank, {"sql": sql})
        whole = service.outcome(authority, outcome.job_id)
    finally:
        service.close()
    assert outcome.state is JobState.RELEASED, (outcome.state, whole.report)
    table = pq.read_table(platform.home / "products" / outcome.product_id / "output.parquet")
    return {row["county"]: row["n"] for row in table.to_pylist()}
