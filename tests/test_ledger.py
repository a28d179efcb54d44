"""The ledger against an insider who edits the SQLite file directly (README, "Security model").

Entries are appended through the platform, in transactions; then the store file
is changed with the ``sqlite3`` module, as someone with file access would, and
:func:`sandbox.core.ledger.verify` must name what was done.
"""

from __future__ import annotations

import json
import sqlite3
import time

import pytest

from policies.errors import IntegrityError
from sandbox.core import keys, ledger
from sandbox.core.ledger import Actor
from sandbox.core.platform import STORE_NAME

ALICE = Actor("alice", "operator", 7)
BOB = Actor("bob", "provider", 8)

# (actor, action, subject, details); entry 1 is the platform's own "platform.init".
ENTRIES = [
    (BOB, "dataset.register", "dataset:pums", {"version": 1}),
    (ALICE, "job.submit", "job:1", {"kind": "sql"}),
    (ALICE, "job.release", "job:1", {"product": "p1"}),
    (BOB, "grant.approve", "grant:1", {"operator": "alice"}),
    (ALICE, "job.submit", "job:2", {"kind": "psi"}),
]
COLUMNS = ("ts", "actor", "role", "action", "subject", "details", "article", "prev_hash", "hash")


@pytest.fixture
def filled(platform):
    """The platform with six ledger entries, each appended in its own transaction."""
    for actor, action, subject, details in ENTRIES:
        with platform.store.transaction() as conn:
            platform.record(conn, actor, action, subject, details, "Art. 18")
    return platform


def verify(platform) -> ledger.VerifyReport:
    """Verify as an auditor would: with the published public key only."""
    public = keys.load_public(platform.public_key_path)
    with platform.store.read() as conn:
        return ledger.verify(conn, public)


def tamper(platform, *statements: tuple[str, tuple]) -> None:
    """Run SQL on the store file behind the platform's back, as an insider would."""
    con = sqlite3.connect(platform.home / STORE_NAME)
    try:
        for sql, params in statements:
            con.execute(sql, params)
        con.commit()
    finally:
        con.close()


def raw_rows(platform) -> dict[int, dict]:
    con = sqlite3.connect(platform.home / STORE_NAME)
    con.row_factory = sqlite3.Row
    try:
        return {row["seq"]: dict(row) for row in con.execute("SELECT * FROM ledger")}
    finally:
        con.close()


def test_untouched_ledger_verifies(filled):
    report = verify(filled)
    assert report.entries == 6
    assert report.head_seq == 6
    assert report.head_hash == raw_rows(filled)[6]["hash"]


def test_entries_chain_and_carry_their_fields(filled):
    rows = raw_rows(filled)
    assert rows[1]["action"] == "platform.init"
    assert rows[1]["prev_hash"] == ledger.GENESIS
    for seq in range(2, 7):
        assert rows[seq]["prev_hash"] == rows[seq - 1]["hash"]
    assert (rows[3]["actor"], rows[3]["role"], rows[3]["action"]) == (
        "alice",
        "operator",
        "job.submit",
    )
    assert json.loads(rows[3]["details"]) == {"kind": "sql"}
    assert rows[3]["article"] == "Art. 18"


def test_an_empty_store_does_not_verify(tmp_path):
    """A platform's ledger begins with platform.init: no entries at all were deleted."""
    from sandbox.core.store import Store

    store = Store.open(tmp_path / "bare.sqlite", create=True)
    with store.read() as conn, pytest.raises(IntegrityError, match="no entries") as err:
        ledger.verify(conn, None)
    assert err.value.article == "Art. 7"
    store.dispose()


def test_edited_details_name_the_entry(filled):
    tamper(filled, ("UPDATE ledger SET details = ? WHERE seq = 3", ('{"kind":"psi"}',)))
    with pytest.raises(IntegrityError, match=r"^ledger entry 3 was edited") as err:
        verify(filled)
    assert err.value.article == "Art. 7"


@pytest.mark.parametrize(
    ("column", "value"),
    [("actor", "mallory"), ("ts", "2020-01-01T00:00:00+00:00"), ("article", "Art. 1")],
)
def test_any_edited_column_is_noticed(filled, column, value):
    tamper(filled, (f"UPDATE ledger SET {column} = ? WHERE seq = 4", (value,)))
    with pytest.raises(IntegrityError, match=r"ledger entry 4 was edited"):
        verify(filled)


def test_edit_with_recomputed_hash_breaks_the_next_link(filled):
    row = raw_rows(filled)[3]
    fields = {**row, "details": {"kind": "psi"}}
    forged = ledger.entry_hash(fields)
    tamper(
        filled,
        ("UPDATE ledger SET details = ?, hash = ? WHERE seq = 3", ('{"kind":"psi"}', forged)),
    )
    with pytest.raises(IntegrityError, match=r"ledger entry 4 does not follow entry 3"):
        verify(filled)


def test_rewritten_chain_is_caught_by_the_signed_head(filled):
    """Edit entry 3 and recompute every later hash: only the head signature can tell."""
    rows = raw_rows(filled)
    rows[3]["details"] = '{"kind":"psi"}'
    prev = rows[2]["hash"]
    statements = []
    for seq in range(3, 7):
        row = rows[seq]
        row["prev_hash"] = prev
        row["hash"] = ledger.entry_hash({**row, "details": json.loads(row["details"])})
        prev = row["hash"]
        statements.append(
            (
                "UPDATE ledger SET details = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                (row["details"], row["prev_hash"], row["hash"], seq),
            )
        )
    tamper(filled, *statements)
    with pytest.raises(IntegrityError, match=r"entry 6 does not match the signed head"):
        verify(filled)


def test_deleted_middle_entry_is_named_missing(filled):
    tamper(filled, ("DELETE FROM ledger WHERE seq = 3", ()))
    with pytest.raises(IntegrityError, match=r"^ledger entry 3 is missing \(deleted\)"):
        verify(filled)


def test_swapped_neighbours_name_the_first(filled):
    rows = raw_rows(filled)
    sets = ", ".join(f"{c} = ?" for c in COLUMNS)
    tamper(
        filled,
        (f"UPDATE ledger SET {sets} WHERE seq = 3", tuple(rows[4][c] for c in COLUMNS)),
        (f"UPDATE ledger SET {sets} WHERE seq = 4", tuple(rows[3][c] for c in COLUMNS)),
    )
    with pytest.raises(IntegrityError, match=r"^ledger entry 3 holds the content of entry 4"):
        verify(filled)


def test_swapped_distant_entries_name_the_first(filled):
    rows = raw_rows(filled)
    sets = ", ".join(f"{c} = ?" for c in COLUMNS)
    tamper(
        filled,
        (f"UPDATE ledger SET {sets} WHERE seq = 2", tuple(rows[5][c] for c in COLUMNS)),
        (f"UPDATE ledger SET {sets} WHERE seq = 5", tuple(rows[2][c] for c in COLUMNS)),
    )
    with pytest.raises(IntegrityError, match=r"^ledger entry 2 "):
        verify(filled)


def test_deleted_last_entry_is_caught_by_the_head(filled):
    tamper(filled, ("DELETE FROM ledger WHERE seq = 6", ()))
    with pytest.raises(IntegrityError, match=r"signed head names entry 6.*ends at entry 5"):
        verify(filled)


def test_truncation_with_a_moved_head_fails_the_signature(filled):
    row5 = raw_rows(filled)[5]
    tamper(
        filled,
        ("DELETE FROM ledger WHERE seq = 6", ()),
        ("UPDATE ledger_head SET seq = 5, hash = ? WHERE id = 1", (row5["hash"],)),
    )
    with pytest.raises(IntegrityError, match=r"ledger head: the signature does not match"):
        verify(filled)


def _forged_entry(platform) -> tuple[str, tuple]:
    last = raw_rows(platform)[6]
    fields = {
        "seq": 7,
        "ts": ledger.now_utc(),
        "actor": "mallory",
        "role": "auditor",
        "action": "job.release",
        "subject": "job:9",
        "details": {},
        "article": "Art. 7",
        "prev_hash": last["hash"],
    }
    digest = ledger.entry_hash(fields)
    values = (*{**fields, "details": "{}"}.values(), digest)
    return "INSERT INTO ledger VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values


def test_appended_entry_without_signature_is_caught(filled):
    sql, values = _forged_entry(filled)
    tamper(filled, (sql, values))
    with pytest.raises(IntegrityError, match=r"entries 7 to 7 are not covered by the signed head"):
        verify(filled)


def test_appended_entry_with_a_moved_head_fails_the_signature(filled):
    sql, values = _forged_entry(filled)
    tamper(
        filled,
        (sql, values),
        ("UPDATE ledger_head SET seq = 7, hash = ? WHERE id = 1", (values[-1],)),
    )
    with pytest.raises(IntegrityError, match=r"ledger head: the signature does not match"):
        verify(filled)


def test_replaced_head_signature_is_caught(filled):
    tamper(filled, ("UPDATE ledger_head SET signature = ? WHERE id = 1", ("00" * 64,)))
    with pytest.raises(IntegrityError, match=r"ledger head: the signature does not match"):
        verify(filled)


def test_garbage_head_signature_is_caught(filled):
    tamper(filled, ("UPDATE ledger_head SET signature = ? WHERE id = 1", ("not hex",)))
    with pytest.raises(IntegrityError, match=r"ledger head"):
        verify(filled)


def test_deleted_head_is_caught(filled):
    tamper(filled, ("DELETE FROM ledger_head", ()))
    with pytest.raises(IntegrityError, match=r"signed ledger head is missing"):
        verify(filled)


def test_another_platforms_key_does_not_verify(filled, tmp_path):
    other = keys.create_key(tmp_path / "other-keys")
    with filled.store.read() as conn, pytest.raises(IntegrityError, match="ledger head"):
        ledger.verify(conn, other)


def test_failed_transaction_leaves_no_entry(filled):
    with filled.store.read() as conn:
        before = ledger.count(conn)
    with pytest.raises(RuntimeError, match="crash"), filled.store.transaction() as conn:
        filled.record(conn, ALICE, "job.submit", "job:3", {"kind": "sql"})
        raise RuntimeError("crash after the ledger entry")
    with filled.store.read() as conn:
        assert ledger.count(conn) == before
        assert ledger.query(conn, subject="job:3") == []
    assert verify(filled).entries == before  # the head was rolled back with it
    with filled.store.transaction() as conn:
        assert filled.record(conn, ALICE, "job.submit", "job:3") == before + 1
    assert verify(filled).entries == before + 1


def test_query_filters_by_actor_action_subject(filled):
    with filled.store.read() as conn:
        assert [e["seq"] for e in ledger.query(conn, actor="alice")] == [3, 4, 6]
        assert [e["seq"] for e in ledger.query(conn, action="job.submit")] == [3, 6]
        assert [e["seq"] for e in ledger.query(conn, subject="job:1")] == [3, 4]
        both = ledger.query(conn, actor="bob", action="grant.approve")
        assert [e["seq"] for e in both] == [5]
        assert both[0]["details"] == {"operator": "alice"}
        assert ledger.query(conn, actor="nobody") == []
        assert [e["seq"] for e in ledger.query(conn, actor="alice", limit=2)] == [3, 4]


def test_query_filters_by_time(platform):
    stamps = []
    for i in range(4):
        with platform.store.transaction() as conn:
            platform.record(conn, ALICE, "job.submit", f"job:{i}")
        stamps.append(raw_rows(platform)[i + 2]["ts"])
        time.sleep(0.002)
    with platform.store.read() as conn:
        since = ledger.query(conn, since=stamps[1])
        assert [e["subject"] for e in since] == ["job:1", "job:2", "job:3"]
        until = ledger.query(conn, until=stamps[1], action="job.submit")
        assert [e["subject"] for e in until] == ["job:0", "job:1"]
        window = ledger.query(conn, since=stamps[1], until=stamps[2])
        assert [e["subject"] for e in window] == ["job:1", "job:2"]
