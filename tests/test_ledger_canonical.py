"""The ledger's canonical JSON is RFC 8785 (the JSON Canonicalization Scheme): any tool that
implements the RFC recomputes an entry's hash; ledgers begun before keep their own form."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from sandbox.core import keys, ledger
from sandbox.core.canonical import SAFE_INTEGER, canonical, legacy_canonical
from sandbox.core.ledger import Actor
from sandbox.core.platform import STORE_NAME

HASHED = ("seq", "ts", "actor", "role", "action", "subject", "details", "article", "prev_hash")
ALICE = Actor("alice", "operator", 7)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
    | st.text(st.characters(codec=None, categories=["Cs", "Lo", "Ll"]), max_size=3)
)
documents = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def _i_json(data):
    """The I-JSON domain, written here independently of the ledger's own helper."""
    if isinstance(data, bool) or data is None or isinstance(data, str):
        return data
    if isinstance(data, int):
        return data if abs(data) <= SAFE_INTEGER else str(data)
    if isinstance(data, float):
        return data if math.isfinite(data) else str(data)
    if isinstance(data, list):
        return [_i_json(v) for v in data]
    return {k: _i_json(v) for k, v in data.items()}


@settings(max_examples=400, deadline=None)
@given(documents)
def test_the_canonical_form_is_the_rfcs_whichever_path_writes_it(data):
    """The fast path (json.dumps for plain data) and the library agree byte for byte."""
    try:
        expected = rfc8785.dumps(_i_json(data))
    except rfc8785.CanonicalizationError:
        # lone surrogates: the RFC writes none, and neither may the ledger
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical(data)
        return
    assert canonical(data) == expected


def test_a_lone_surrogate_is_refused_on_the_fast_path_too():
    """json.dumps would write it raw; the ledger's bytes must be UTF-8 the RFC allows."""
    for data in ({"k": "a\udc00"}, ["\ud800"], "\udfff"):
        with pytest.raises(rfc8785.CanonicalizationError):
            canonical(data)
    with pytest.raises(UnicodeEncodeError):  # a key: the library's UTF-16 sort refuses it
        canonical({"\ud800": 1})


def test_an_entry_hash_is_recomputed_with_the_rfc_alone(platform):
    details = {"epsilon": 0.1, "share": 1e-9, "total": 12.0, "big": 2**60, "县": "任城区"}
    with platform.store.transaction() as conn:
        seq = platform.record(conn, ALICE, "dp.spend", "agreement:1", details, "Art. 15")
    con = sqlite3.connect(platform.home / STORE_NAME)
    con.row_factory = sqlite3.Row
    row = dict(con.execute("SELECT * FROM ledger WHERE seq = ?", (seq,)).fetchone())
    con.close()
    assert row["details"] == (
        '{"big":"1152921504606846976","epsilon":0.1,"share":1e-9,"total":12,"县":"任城区"}'
    )
    body = {k: row[k] for k in HASHED} | {"details": json.loads(row["details"])}
    assert hashlib.sha256(rfc8785.dumps(body)).hexdigest() == row["hash"]
    with platform.store.read() as conn:
        assert ledger.verify(conn, keys.load_public(platform.public_key_path)).entries == seq


def test_a_ledger_begun_before_the_rfc_keeps_verifying_and_growing_in_its_own_form(platform):
    """An older home: entries hashed with json.dumps(sort_keys=True), no marker in its
    platform.init entry. It still verifies, and later entries are written in its form."""
    with platform.store.transaction() as conn:
        platform.record(conn, ALICE, "dp.spend", "agreement:1", {"epsilon": 0.5}, "Art. 15")
    con = sqlite3.connect(platform.home / STORE_NAME)
    con.row_factory = sqlite3.Row
    rows = [dict(r) for r in con.execute("SELECT * FROM ledger ORDER BY seq")]
    prev = ledger.GENESIS
    for row in rows:
        details = json.loads(row["details"])
        details.pop("canonical_json", None)
        row["details"], row["prev_hash"] = json.dumps(details, sort_keys=True), prev
        row["hash"] = ledger.entry_hash(row | {"details": details}, legacy_canonical)
        prev = row["hash"]
        con.execute(
            "UPDATE ledger SET details = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (row["details"], row["prev_hash"], row["hash"], row["seq"]),
        )
    last = rows[-1]
    signature = keys.sign(
        platform.key, f"sandbox-ledger-head:{last['seq']}:{last['hash']}".encode()
    )
    con.execute(
        "UPDATE ledger_head SET hash = ?, signature = ? WHERE id = 1", (last["hash"], signature)
    )
    con.commit()
    con.close()
    (platform.home / ledger.HEAD_COPY).unlink()
    ledger._FORMS.clear()  # a new process opens the older home
    public = keys.load_public(platform.public_key_path)
    with platform.store.read() as conn:
        assert ledger.verify(conn, public).entries == len(rows)
    with platform.store.transaction() as conn:
        seq = platform.record(conn, ALICE, "dp.spend", "agreement:1", {"epsilon": 1e-9}, "Art. 15")
    with platform.store.read() as conn:
        assert ledger.verify(conn, public).entries == seq
        stored = conn.execute(ledger.ledger.select().where(ledger.ledger.c.seq == seq)).first()
    assert stored.details == '{"epsilon": 1e-09}'.replace(" ", "")  # json.dumps' own form
