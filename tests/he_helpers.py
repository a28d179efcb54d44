"""Builders for the HE aggregate tests: a small enterprise registry and the grants to use it.

Everything is real: the registry is a Parquet file registered through the
vault, grants come from ``sandbox.data.grants.add_grant`` or from the workflow
(notice, application, reviews, agreement, data request, approval).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from policies.classes import Classification
from sandbox.data import vault
from sandbox.data.grants import add_grant
from sandbox.workflow import notices, requests, reviews

REGISTRY = Classification.from_dict(
    {
        "entity_key": "code",
        "membership": "non_sensitive",  # a public register: being in it says nothing
        "columns": {
            "code": "identifier",
            "name": "identifier",
            "county": "public",  # the register of enterprises is published
            "industry": "public",
            "status": "dimension",  # not published here: HE may not group by it
            "founded": "quasi",
            "capital": "measure",
        },
    }
)
COUNTIES = ("370811", "370812", "370826", "370832")
SMALL_COUNTY = "370899"  # holds fewer enterprises than the threshold


def registry(rows: int = 600, seed: int = 3, small: int = 4) -> pa.Table:
    """Enterprises in four counties and two industries, plus ``small`` in one tiny county.

    Names repeat: ``SHARED-0`` .. ``SHARED-4`` each name two enterprises in different
    counties (an ambiguous key for a join on ``name``).
    """
    rng = np.random.default_rng(seed)
    county = rng.choice(np.array(COUNTIES), rows)
    county[:small] = SMALL_COUNTY
    names = np.array([f"N{i:05d}" for i in range(rows)], dtype=object)
    for i in range(5):
        names[10 + 2 * i] = names[11 + 2 * i] = f"SHARED-{i}"
        county[10 + 2 * i], county[11 + 2 * i] = COUNTIES[0], COUNTIES[1]
    return pa.table(
        {
            "code": [f"C{i:06d}" for i in range(rows)],
            "name": names.tolist(),
            "county": county.tolist(),
            "industry": rng.choice(np.array(["C", "F"]), rows).tolist(),
            "founded": rng.integers(1990, 2024, rows),
            "capital": rng.integers(10_000, 5_000_000, rows),
            "status": ["closed" if i % 7 == 0 else "active" for i in range(rows)],
        }
    )


def register_registry(platform, provider, folder: Path, table: pa.Table | None = None) -> pa.Table:
    table = table if table is not None else registry()
    path = Path(folder) / "registry.parquet"
    pq.write_table(table, path)
    vault.register(platform, provider, "registry", str(path), REGISTRY)
    return table


def direct_grant(platform, authority, operator_name: str, **kw) -> int:
    return add_grant(
        platform,
        authority,
        operator_name,
        "registry",
        until=(datetime.now(UTC) + timedelta(days=30)).isoformat(),
        job_kinds=("he_aggregate",),
        **kw,
    )


def agreement_grant(cast) -> int:
    """An active agreement covering registry for HE jobs, and its approved grant."""
    from tests.workflow_helpers import apply, sign

    notice_id = notices.publish(
        cast.platform,
        cast.city,
        title="Loan exposure by county",
        domain="finance",
        scenario="a bank's encrypted loan balances summed by county",
        datasets=["registry"],
        conditions="licensed bank",
        deadline=datetime.now(UTC) + timedelta(days=30),
    )
    application_id = apply(cast, notice_id, datasets={"registry": None}, job_kinds=["he_aggregate"])
    reviews.appoint(cast.platform, cast.city, application_id, ["r1", "r2"])
    for reviewer in (cast.r1, cast.r2):
        reviews.score(
            cast.platform, reviewer, application_id, capability=80, scenario=80, security=85
        )
    agreement_id = sign(cast, application_id)
    request_id = requests.request_data(
        cast.platform, cast.operator, agreement_id, "registry", purpose="loan exposure"
    )
    requests.approve(cast.platform, cast.provider, request_id)
    return agreement_id


def expected_sums(table: pa.Table, key_column: str, by: list[str], keys, values) -> dict:
    """Plaintext group sums and distinct-subject counts of the keys that match one group."""
    rows = table.to_pylist()
    groups_of: dict[str, set] = {}
    for row in rows:
        groups_of.setdefault(str(row[key_column]), set()).add(tuple(row[c] for c in by))
    sums: dict[tuple, float] = {}
    counts: dict[tuple, int] = {}
    for key, value in zip(keys, values, strict=True):
        found = groups_of.get(key)
        if not found or len(found) != 1:
            continue
        (group,) = found
        sums[group] = sums.get(group, 0) + value
        counts[group] = counts.get(group, 0) + 1
    return {g: (sums[g], counts[g]) for g in sums}
