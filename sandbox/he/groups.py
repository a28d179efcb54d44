"""The join of the operator's keys to the dataset's snapshot (DuckDB, in-process):
which answer slot each list entry adds to, and which groups are refused for having
too few subjects.

:class:`Groups` keeps the counts and the per-group reasons (``withheld``) for the
ledger only; the operator's answer lists the released groups and nothing else
(:func:`sandbox.he.service._header`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from jobs.he_aggregate import (
    GroupVerdict,
    HePlan,
    judge_groups,
)
from policies.errors import JobFailed


@dataclass(frozen=True)
class Groups:
    """The join's outcome. ``labels[i]`` is the answer slot of list entry i, or -1."""

    labels: np.ndarray
    released: list[tuple[tuple, int]]  # (group values, subjects) in answer-slot order
    refused: int
    refused_entries: int
    unmatched: int
    ambiguous: int
    # The entity keys of each released group, in answer-slot order (the differencing
    # defence judges them against every earlier release of the dataset).
    entities: list[list[str]] = field(default_factory=list)
    differenced: int = 0  # groups withheld by the differencing defence
    # (group values, reason) of each withheld group, reason "min_entities" or
    # "differencing": for the auditors' ledger entry, never for the operator.
    withheld: list[tuple[tuple, str]] = field(default_factory=list)

    def without(self, slots: set[int]) -> Groups:
        """These groups withheld (by the differencing defence): the other groups move up
        to fill the answer's slots and the withheld ones' entries join no group."""
        if not slots:
            return self
        keep = [s for s in range(len(self.released)) if s not in slots]
        new_slot = np.full(len(self.released) + 1, -1, dtype=np.int32)
        for new, old in enumerate(keep):
            new_slot[old] = new
        labels = np.where(self.labels >= 0, new_slot[self.labels], -1).astype(np.int32)
        dropped = int(np.count_nonzero((self.labels >= 0) & (labels < 0)))
        return replace(
            self,
            labels=labels,
            released=[self.released[s] for s in keep],
            entities=[self.entities[s] for s in keep] if self.entities else [],
            refused=self.refused + len(slots),
            refused_entries=self.refused_entries + dropped,
            differenced=self.differenced + len(slots),
            withheld=self.withheld + [(self.released[s][0], "differencing") for s in sorted(slots)],
        )


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def join_groups(
    plan: HePlan, snapshot: Path, keys: Sequence[str], *, entities: bool = False
) -> Groups:
    """Join the operator's keys to the snapshot (DuckDB, in-process) and judge the groups.

    ``entities``: also list each released group's entity keys (for the differencing
    defence; a million keys cost about a second, so only when it is on)."""
    joined = _join(plan, snapshot, keys, entities)
    n = len(keys)
    subjects = {tuple(row[1:-1]): int(row[-1]) for row in joined.groups}
    gid_of = {tuple(row[1:-1]): int(row[0]) for row in joined.groups}
    decisions = judge_groups(subjects, plan.min_subjects)
    released = [(d.group, d.subjects) for d in decisions if d.verdict is GroupVerdict.RELEASE]
    slot_of_gid = np.full(max(len(joined.groups), 1), -1, dtype=np.int64)
    for slot, (group, _n) in enumerate(released):
        slot_of_gid[gid_of[group]] = slot
    labels = np.full(n, -1, dtype=np.int32)
    pos = np.asarray(joined.pairs["pos"], dtype=np.int64)
    gid = np.asarray(joined.pairs["gid"], dtype=np.int64)
    labels[pos] = slot_of_gid[gid]
    return Groups(
        labels=labels,
        released=released,
        refused=sum(1 for d in decisions if d.verdict is GroupVerdict.REFUSE),
        refused_entries=int(np.count_nonzero(slot_of_gid[gid] < 0)),
        unmatched=n - len(pos) - joined.ambiguous,
        ambiguous=joined.ambiguous,
        entities=(
            [list(joined.members[gid_of[group]]) for group, _n in released] if entities else []
        ),
        withheld=[(d.group, "min_entities") for d in decisions if d.verdict is GroupVerdict.REFUSE],
    )


@dataclass(frozen=True)
class _Joined:
    groups: list  # (gid, *group values, subjects)
    pairs: dict  # numpy columns pos, gid: which list entry joins which group
    members: dict  # gid -> entity keys (only when asked)
    ambiguous: int  # list entries whose key rows disagree on the group


def _join(plan: HePlan, snapshot: Path, keys: Sequence[str], entities: bool) -> _Joined:
    """The DuckDB part: distinct (key, entity, group) rows of the snapshot, keys whose
    rows disagree on the group set aside as ambiguous, the others numbered by group."""
    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as pads

    by = [f"b{i}" for i in range(len(plan.by))]
    by_select = ", ".join(f"{_q(c)} AS {b}" for c, b in zip(plan.by, by, strict=True))
    same = " AND ".join(f"m.{b} IS NOT DISTINCT FROM g.{b}" for b in by)
    cols = ", ".join(by)
    con = duckdb.connect(config={"threads": 2})
    try:
        con.register("q", pa.table({"pos": pa.array(range(len(keys)), pa.int64()), "k": keys}))
        con.register("snap", pads.dataset(str(snapshot), format="parquet"))
        con.execute("SET enable_external_access = false")
        con.execute(
            f"""CREATE TEMP TABLE d AS SELECT DISTINCT CAST({_q(plan.key_column)} AS VARCHAR) AS k,
                CAST({_q(plan.entity_key)} AS VARCHAR) AS e, {by_select}
                FROM snap WHERE {_q(plan.key_column)} IS NOT NULL"""
        )
        con.execute(
            f"""CREATE TEMP TABLE amb AS SELECT k FROM (SELECT DISTINCT k, {cols} FROM d)
                GROUP BY k HAVING count(*) > 1"""
        )
        con.execute(
            """CREATE TEMP TABLE m AS SELECT q.pos, d.* EXCLUDE (k) FROM q JOIN d ON q.k = d.k
               WHERE d.k NOT IN (SELECT k FROM amb)"""
        )
        con.execute(
            f"""CREATE TEMP TABLE grp AS SELECT row_number() OVER (ORDER BY {cols}) - 1 AS gid,
                {cols}, count(DISTINCT e) AS subjects FROM m GROUP BY {cols}"""
        )
        members_sql = f"SELECT g.gid, list(DISTINCT m.e) FROM m JOIN grp g ON {same} GROUP BY g.gid"
        ambiguous = con.execute("SELECT count(*) FROM q WHERE k IN (SELECT k FROM amb)").fetchone()
        assert ambiguous is not None  # count(*) always answers one row
        return _Joined(
            groups=con.execute(f"SELECT gid, {cols}, subjects FROM grp ORDER BY gid").fetchall(),
            pairs=con.execute(
                f"SELECT DISTINCT m.pos, g.gid FROM m JOIN grp g ON {same}"
            ).fetchnumpy(),
            members=dict(con.execute(members_sql).fetchall()) if entities else {},
            ambiguous=int(ambiguous[0]),
        )
    except duckdb.Error as exc:
        raise JobFailed(
            f"the join of your keys to '{plan.dataset}' failed ({type(exc).__name__})",
            code="engine_error",
        ) from exc
    finally:
        con.close()
