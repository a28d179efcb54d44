"""The join of the operator's keys to the dataset's snapshot (DuckDB and Arrow,
in-process): which answer slot each list entry adds to, and which groups are refused
for having too few subjects.

DuckDB reads the key, entity and group columns of the snapshot (with each row's entity
number beside it when the differencing defence needs the groups' entities) and joins
the list's keys to them; the rest is Arrow and numpy over the joined rows: group codes
by dictionary encoding, keys whose rows disagree on the group, distinct subjects per
group by sorting (group, entity) codes. The entity numbers come from the dataset
version's numbering (:mod:`sandbox.guard.numbering`, the one the SQL jobs read), so
an answer over a million keys looks no key up one by one in Python.

:class:`Groups` keeps the counts and the per-group reasons (``withheld``) for the
ledger only; the operator's answer lists the released groups and nothing else
(:func:`sandbox.he.service._header`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

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
    # The entity numbers of each released group, in answer-slot order (the differencing
    # defence judges them against every earlier release of the dataset).
    entities: list[np.ndarray] = field(default_factory=list)
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
    plan: HePlan, snapshot: Path, keys: Sequence[str], *, numbers: Path | None = None
) -> Groups:
    """Join the operator's keys to the snapshot and judge the groups.

    ``numbers``: the snapshot's row file of entity numbers (in row order,
    :func:`sandbox.guard.numbering.numbering_for`); with it, each released group's
    entity numbers are listed too (for the differencing defence)."""
    joined = _join(plan, snapshot, keys, numbers)
    n = len(keys)
    subjects = {
        group: int(count) for group, count in zip(joined.values, joined.subjects, strict=True)
    }
    gid_of = {group: gid for gid, group in enumerate(joined.values)}
    decisions = judge_groups(subjects, plan.min_subjects)
    released = [(d.group, d.subjects) for d in decisions if d.verdict is GroupVerdict.RELEASE]
    slot_of_gid = np.full(max(len(joined.values), 1), -1, dtype=np.int64)
    for slot, (group, _n) in enumerate(released):
        slot_of_gid[gid_of[group]] = slot
    labels = np.full(n, -1, dtype=np.int32)
    labels[joined.pos] = slot_of_gid[joined.gid]
    members = joined.members
    return Groups(
        labels=labels,
        released=released,
        refused=sum(1 for d in decisions if d.verdict is GroupVerdict.REFUSE),
        refused_entries=int(np.count_nonzero(slot_of_gid[joined.gid] < 0)),
        unmatched=n - len(joined.pos) - joined.ambiguous,
        ambiguous=joined.ambiguous,
        entities=[members[gid_of[group]] for group, _n in released] if members else [],
        withheld=[(d.group, "min_entities") for d in decisions if d.verdict is GroupVerdict.REFUSE],
    )


@dataclass(frozen=True)
class _Joined:
    values: list[tuple]  # each group's values, by group id
    subjects: np.ndarray  # each group's distinct entities, by group id
    pos: np.ndarray  # the list entries that join a group (each once) ...
    gid: np.ndarray  # ... and the group each joins
    members: list[np.ndarray] | None  # each group's entity numbers (only when asked)
    ambiguous: int  # list entries whose key rows disagree on the group


def _join(plan: HePlan, snapshot: Path, keys: Sequence[str], numbers: Path | None) -> _Joined:
    """The joined rows (list entry, group columns, entity) and what they make: groups,
    their subjects, the entries of each group; keys whose rows disagree on the group
    are set aside as ambiguous."""
    rows = _joined_rows(plan, snapshot, keys, numbers)
    pos = rows.column("pos").to_numpy().astype(np.int64)
    codes, dictionaries = [], []
    for i in range(len(plan.by)):
        column = rows.column(f"b{i}").combine_chunks()
        encoded = pc.dictionary_encode(column, null_encoding="encode")
        codes.append(encoded.indices.to_numpy().astype(np.int64))
        dictionaries.append(encoded.dictionary.to_pylist())
    code = _group_code(codes, [len(d) for d in dictionaries], len(pos))
    # a key whose rows disagree on the group: some row's code differs from the last one
    # written for its entry
    last = np.full(len(keys), -1, dtype=np.int64)
    last[pos] = code
    ambiguous = np.unique(pos[last[pos] != code])
    keep = np.ones(len(keys), dtype=bool)
    keep[ambiguous] = False
    kept = keep[pos]
    pos, code = pos[kept], code[kept]
    codes = [c[kept] for c in codes]
    unique, first, gid = np.unique(code, return_index=True, return_inverse=True)
    values = [
        tuple(d[c[i]] for c, d in zip(codes, dictionaries, strict=True)) for i in first.tolist()
    ]
    entity = _entity_codes(plan, rows, kept, pos)
    subjects = _distinct_per_group(gid, entity, len(unique))
    members = None
    if numbers is not None:
        if rows.column("en").null_count:  # every row of a numbered version has a number
            raise JobFailed(
                f"the entity numbering of '{plan.dataset}' lacks some of its rows",
                code="engine_error",
            )
        number = rows.column("en").to_numpy().astype(np.int64)[kept]
        members = _members(gid, number, len(unique))
    entry_gid = np.full(len(keys), -1, dtype=np.int64)
    entry_gid[pos] = gid
    entries = np.flatnonzero(entry_gid >= 0)
    return _Joined(values, subjects, entries, entry_gid[entries], members, len(ambiguous))


def _group_code(codes: list[np.ndarray], sizes: list[int], n: int) -> np.ndarray:
    """One integer per row for its combination of group values (mixed radix, made dense
    again whenever the product of the dictionaries' sizes would leave 62 bits)."""
    if not codes:
        return np.zeros(n, dtype=np.int64)
    code, size = codes[0], max(1, sizes[0])
    for c, s in zip(codes[1:], sizes[1:], strict=True):
        if size * max(1, s) >= 1 << 62:
            uniques, code = np.unique(code, return_inverse=True)
            size = max(1, len(uniques))
        code, size = code * max(1, s) + c, size * max(1, s)
    return code


def _entity_codes(plan: HePlan, rows, kept: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """An integer per kept row for its entity, -1 for a NULL entity (not counted, as
    ``count(DISTINCT e)`` does not count it). When the key is the entity key, the
    list entry is the entity."""
    if plan.entity_key == plan.key_column:
        return pos
    encoded = pc.dictionary_encode(rows.column("e").combine_chunks())
    return encoded.indices.fill_null(-1).to_numpy().astype(np.int64)[kept]


def _distinct_per_group(gid: np.ndarray, entity: np.ndarray, groups: int) -> np.ndarray:
    """How many distinct entities (>= 0) each group holds."""
    pairs = _unique_pairs(gid[entity >= 0], entity[entity >= 0])
    return np.bincount(pairs >> 32, minlength=groups)


def _members(gid: np.ndarray, number: np.ndarray, groups: int) -> list[np.ndarray]:
    """Each group's distinct entity numbers, ascending."""
    pairs = _unique_pairs(gid, number)
    cuts = np.searchsorted(pairs >> 32, np.arange(groups + 1))
    low = (pairs & 0xFFFFFFFF).astype(np.uint32)
    return [low[cuts[g] : cuts[g + 1]] for g in range(groups)]


def _unique_pairs(high: np.ndarray, low: np.ndarray) -> np.ndarray:
    """The distinct (high, low) pairs, each as ``high << 32 | low``, sorted."""
    pairs = (high.astype(np.int64) << 32) | low.astype(np.int64)
    pairs.sort()
    if len(pairs):
        pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
    return pairs


def _joined_rows(plan: HePlan, snapshot: Path, keys: Sequence[str], numbers: Path | None):
    """DuckDB: the snapshot rows whose key (as text) is in the list, each with its list
    entry ``pos``, group columns ``b0..``, entity ``e`` (as text, when the key is not
    the entity key) and entity number ``en`` (with ``numbers``). Only those columns
    of the snapshot are read."""
    import duckdb

    columns = list(dict.fromkeys([plan.key_column, plan.entity_key, *plan.by]))
    read = pq.read_table(snapshot, columns=columns)
    parts = {"k": read.column(plan.key_column)}
    parts.update({f"b{i}": read.column(c) for i, c in enumerate(plan.by)})
    items = ["q.pos", *(f"s.b{i}" for i in range(len(plan.by)))]
    if plan.entity_key != plan.key_column:
        parts["e"] = read.column(plan.entity_key)
        items.append("CAST(s.e AS VARCHAR) AS e")
    if numbers is not None:
        parts["en"] = pq.read_table(numbers).column(0)
        if len(parts["en"]) != read.num_rows:
            raise JobFailed(
                f"the entity numbering of '{plan.dataset}' does not match its snapshot",
                code="engine_error",
            )
        items.append("s.en")
    con = duckdb.connect(config={"threads": 2})
    try:
        con.register("snap", pa.table(parts))
        con.register("q", pa.table({"pos": np.arange(len(keys)), "k": pa.array(keys, pa.string())}))
        con.execute("SET enable_external_access = false")
        return con.sql(
            f"SELECT {', '.join(items)} FROM snap s JOIN q ON CAST(s.k AS VARCHAR) = q.k "
            "WHERE s.k IS NOT NULL"
        ).to_arrow_table()
    except duckdb.Error as exc:
        raise JobFailed(
            f"the join of your keys to '{plan.dataset}' failed ({type(exc).__name__})",
            code="engine_error",
        ) from exc
    finally:
        con.close()
