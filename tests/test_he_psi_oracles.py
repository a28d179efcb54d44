"""HE and PSI answers that are not oracles (issue 18, items 2 and 3), through the real paths.

HE: the answer carries the released groups and nothing else, so two lists that differ
only in keys that match nothing get the same answer, and a group withheld (too few
subjects, or too close to an earlier release) looks exactly like a group no key reached;
the reasons stay in the ledger. Groups are ``public`` columns only.

PSI: the daily cap counts every opened session, refused ones too; groups are ``public``
columns only; cardinality mode does not hide the items from a client that encrypts each
item under its own key (shown here), so over persons it needs consent like membership.

Real parts throughout: the vault's snapshots, DuckDB, TenSEAL (BFV, exact sums), the HE
worker processes, the PSI library on both sides, the store and its ledger.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import private_set_intersection.python as psi_lib
import pyarrow.parquet as pq
import pytest

from jobs.he_aggregate import unpack
from jobs.psi_match import unpack_parts
from policies.errors import PolicyRefusal
from sandbox.client import he as client_he
from sandbox.client.psi import run_psi
from sandbox.core import ledger
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Role, insert
from sandbox.data import vault
from sandbox.he import service as he
from sandbox.psi.service import LocalTransport, open_session, process_chunk, setup_of
from sandbox.psi.terms import set_terms
from tests.he_helpers import (
    COUNTIES,
    REGISTRY,
    SMALL_COUNTY,
    direct_grant,
    register_registry,
    registry,
)
from tests.psi_helpers import PEOPLE, firm_code, psi_grant, register_firms


def _entries(platform, action: str) -> list[dict]:
    with platform.store.read() as conn:
        return ledger.query(conn, action=action)


# --------------------------------------------------------------------------- HE


@pytest.fixture(scope="module")
def bfv():
    return client_he.make_context("bfv")


@pytest.fixture
def bank(platform, provider, make_principal, tmp_path):
    """A registry (four counties, and one with 4 enterprises), a direct HE grant."""
    table = register_registry(platform, provider, tmp_path)
    authority, _ = make_principal("city", Role.AUTHORITY, jurisdiction="city")
    operator, _token = make_principal("bank", Role.OPERATOR)
    direct_grant(platform, authority, "bank")
    return platform, operator, table


def _ask(platform, operator, ctx, keys: list[str], value_of) -> tuple[dict, list]:
    """One HE request through the platform's path: the answer's clear header and the
    decrypted (group, subjects, sum) of each released group."""
    values = [value_of(k) for k in keys]
    body = client_he.build_request(ctx, "registry", "code", ["county"], keys, values, "bfv")
    wire = he.he_sum(platform, operator, body).to_bytes()
    result = client_he.decrypt_answer(ctx, wire)
    head, _frames = unpack(wire, max_frames=1, max_frame=64 << 20)
    return head, [(g.group, g.subjects, g.sum) for g in result.groups]


def _value_of(codes: list[str]):
    index = {c: i for i, c in enumerate(codes)}
    return lambda key: 1_000 + 37 * index.get(key, 5_000)


def test_he_answers_lists_differing_only_in_unmatched_keys_identically(bank, bfv):
    """40 keys that match nothing, interleaved in the list, change nothing the operator
    sees: with an unmatched count (or the list size) in the answer, a list of one real
    key and padding would say whether that key is in the dataset."""
    platform, operator, table = bank
    codes = table.column("code").to_pylist()
    known = codes[20:320]
    padded = list(known)
    for i in range(40):
        padded.insert(7 * i, f"91370800ZZ{i:08d}")  # not in the registry
    value_of = _value_of(codes)
    head_known, sums_known = _ask(platform, operator, bfv, known, value_of)
    head_padded, sums_padded = _ask(platform, operator, bfv, padded, value_of)
    assert sums_known and head_padded == head_known and sums_padded == sums_known
    entries = _entries(platform, "he.sum")  # the auditors still see the difference
    assert [e["details"]["unmatched"] for e in entries] == [0, 40]
    assert [e["details"]["list_size"] for e in entries] == [300, 340]


def test_he_withheld_group_is_indistinguishable_from_an_absent_one(bank, bfv):
    """A county withheld for too few subjects, or by the differencing defence, looks
    like a county none of the keys reached: same header, same sums."""
    platform, operator, table = bank
    codes = table.column("code").to_pylist()
    county_of = dict(zip(codes, table.column("county").to_pylist(), strict=True))
    value_of = _value_of(codes)
    big = [c for c in codes[20:320] if county_of[c] != SMALL_COUNTY]
    small = [c for c in codes if county_of[c] == SMALL_COUNTY]
    assert 0 < len(small) < 10  # under the threshold of 10 subjects
    unknown = [f"91370800ZY{i:08d}" for i in range(len(small))]
    # Too few subjects: the small county's keys against keys that match nothing.
    head_small, sums_small = _ask(platform, operator, bfv, big + small, value_of)
    head_absent, sums_absent = _ask(platform, operator, bfv, big + unknown, value_of)
    assert head_small == head_absent and sums_small == sums_absent
    assert SMALL_COUNTY not in {g["county"] for g, _n, _s in sums_small}
    # Differencing: one more enterprise of county X than a released answer withholds
    # county X; a list without county X at all does not reach it.
    extra = next(c for c in codes[320:] if county_of[c] == COUNTIES[0])
    head_diff, sums_diff = _ask(platform, operator, bfv, [*big, extra], value_of)
    without_x = [c for c in big if county_of[c] != COUNTIES[0]]
    head_none, sums_none = _ask(platform, operator, bfv, without_x, value_of)
    assert COUNTIES[0] not in {g["county"] for g, _n, _s in sums_diff}
    assert head_diff == head_none and sums_diff == sums_none
    # The reasons are the auditors', in the ledger.
    withheld = [e["details"]["withheld"] for e in _entries(platform, "he.sum")]
    assert withheld[0] == [{"group": [SMALL_COUNTY], "reason": "min_entities"}]
    assert withheld[1] == []
    assert withheld[2] == [{"group": [COUNTIES[0]], "reason": "differencing"}]
    assert withheld[3] == []


def test_he_grouping_by_a_non_public_column_is_refused(bank, bfv):
    """``status`` is a dimension, ``founded`` a quasi-identifier: the operator's values
    are its own, so grouping by them would show a chosen subject's status."""
    platform, operator, table = bank
    keys = table.column("code").to_pylist()[:50]
    for column, cls in (("status", "dimension"), ("founded", "quasi")):
        body = client_he.build_request(
            bfv, "registry", "code", [column], keys, [1] * len(keys), "bfv"
        )
        with pytest.raises(PolicyRefusal) as refused:
            he.he_sum(platform, operator, body)
        exc = refused.value
        assert (exc.rule, exc.article, exc.subject) == ("he_group_not_public", "Art. 15", column)
        assert f"'{column}' is a {cls} column" in str(exc) and "Art. 15" in str(exc)
    assert [e["details"]["rule"] for e in _entries(platform, "he.refused")] == [
        "he_group_not_public"
    ] * 2
    assert not _entries(platform, "he.sum")


def test_he_runs_only_over_a_dataset_whose_membership_is_declared_non_sensitive(
    platform, provider, make_principal, tmp_path, bfv
):
    """A register of persons (membership undeclared, so sensitive): an encrypted sum over
    chosen keys would tell which of them are in it. Refused before anything is computed."""
    sensitive = replace(REGISTRY, membership="sensitive")
    table = registry()
    path = tmp_path / "registry.parquet"
    pq.write_table(table, path)
    vault.register(platform, provider, "registry", str(path), sensitive)
    authority, _ = make_principal("city", Role.AUTHORITY, jurisdiction="city")
    operator, _token = make_principal("bank", Role.OPERATOR)
    direct_grant(platform, authority, "bank")
    keys = table.column("code").to_pylist()[:50]
    body = client_he.build_request(bfv, "registry", "code", ["county"], keys, [1] * 50, "bfv")
    with pytest.raises(PolicyRefusal) as refused:
        he.he_sum(platform, operator, body)
    assert (refused.value.rule, refused.value.article) == ("he_membership_sensitive", "Art. 15")
    assert not _entries(platform, "he.sum")


# --------------------------------------------------------------------------- PSI


class Psi:
    """A platform home with a registry provider, the city authority and a bank."""

    def __init__(self, tmp: Path):
        home = tmp / "home"
        home.mkdir()
        (home / "sandbox.toml").write_text(
            "[psi]\nbuild_processes = 1\nchunk_items = 400\n", encoding="utf-8"
        )
        self.tmp = tmp
        self.platform = Platform.init(home)
        with self.platform.store.transaction() as conn:
            now = now_utc()
            self.provider, _ = insert(conn, "registry", Role.PROVIDER, "registry", None, now)
            self.authority, _ = insert(conn, "city", Role.AUTHORITY, "city", "city", now)
            self.bank, _ = insert(conn, "bank", Role.OPERATOR, "bank", None, now)

    def match(self, items, **kw):
        return run_psi(LocalTransport(self.platform, self.bank), "firms", "code", items, **kw)


@pytest.fixture
def psi(tmp_path):
    cast = Psi(tmp_path)
    yield cast
    cast.platform.close()


def test_psi_refused_sessions_count_toward_the_daily_cap(psi):
    """Two refused requests (lists under the minimum) use up a cap of two: the third
    request, a valid list, is refused for the cap. Without counting refusals it would run."""
    register_firms(psi.platform, psi.provider, psi.tmp / "data", [firm_code(i) for i in range(300)])
    psi_grant(psi.platform, psi.authority, psi.bank, min_items=100, daily_cap=2)
    for probe in ([firm_code(1)], [firm_code(2), "91370800ZZ00000001"]):
        with pytest.raises(PolicyRefusal) as exc:
            psi.match(probe)
        assert exc.value.rule == "psi_list_too_small"
    with pytest.raises(PolicyRefusal) as exc:
        psi.match([firm_code(i) for i in range(150)])
    assert (exc.value.rule, exc.value.article) == ("psi_daily_cap", "Art. 13")
    refused = _entries(psi.platform, "psi.refused")
    assert [(e["details"]["rule"], e["details"]["requests_today"]) for e in refused] == [
        ("psi_list_too_small", 1),
        ("psi_list_too_small", 2),
        ("psi_daily_cap", 3),
    ]
    assert not _entries(psi.platform, "psi.open")
    assert "91370800ZZ00000001" not in str(refused)


def test_psi_grouping_by_a_non_public_column_is_refused(psi):
    """``county`` of the people dataset is a dimension: the authority cannot offer it for
    group counts, and a session that asks for it is refused naming the column."""
    path = psi.tmp / "people.csv"
    ids = [f"3708021990{i:07d}X" for i in range(150)]
    path.write_text("pid,county\n" + "".join(f"{p},370811\n" for p in ids), encoding="utf-8")
    vault.register(psi.platform, psi.provider, "people", f"csv://{path}?text=pid,county", PEOPLE)
    grant_id = psi_grant(psi.platform, psi.authority, psi.bank, dataset="people", column="pid")
    with pytest.raises(PolicyRefusal) as offered:
        set_terms(
            psi.platform,
            psi.authority,
            dataset="people",
            column="pid",
            grant_id=grant_id,
            group_dimensions=["county"],
        )
    assert (offered.value.rule, offered.value.subject) == ("psi_group_not_public", "county")
    ask = {"dataset": "people", "column": "pid", "list_size": 120, "group_by": "county"}
    with pytest.raises(PolicyRefusal) as asked:
        open_session(psi.platform, psi.bank, {**ask, "consent": "CONSENT-1"})
    exc = asked.value
    assert (exc.rule, exc.article, exc.subject) == ("psi_group_not_public", "Art. 15", "county")
    assert "'county' is a dimension column" in str(exc) and "public" in str(exc)


def test_psi_cardinality_with_a_key_per_item_reveals_the_items_so_persons_need_consent(psi):
    """The known limit of cardinality mode, through the real path: a client that encrypts
    each item under its own key decrypts the sorted answer key by key and learns which
    items matched. The platform cannot tell (every element is a random-looking point), so
    over persons a cardinality session needs the consent that membership needs."""
    register_firms(psi.platform, psi.provider, psi.tmp / "data", [firm_code(i) for i in range(300)])
    psi_grant(psi.platform, psi.authority, psi.bank, min_items=100, daily_cap=10)
    mine = [firm_code(i) for i in range(250, 350)]  # 250..299 registered
    session = open_session(
        psi.platform,
        psi.bank,
        {"dataset": "firms", "column": "code", "mode": "cardinality", "list_size": len(mine)},
    )
    _kind, parts = unpack_parts(
        setup_of(psi.platform, psi.bank, session["session"]).path.read_bytes()
    )
    setups = []  # shards of the one set under the platform's one key
    for _label, data in parts:
        setups.append(psi_lib.ServerSetup())
        setups[-1].ParseFromString(data)
    clients = [psi_lib.client.CreateWithNewKey(False) for _ in mine]
    request = psi_lib.Request()
    request.reveal_intersection = False
    for client, item in zip(clients, mine, strict=True):
        request.encrypted_elements.extend(client.CreateRequest([item]).encrypted_elements)
    response = psi_lib.Response()
    response.ParseFromString(
        process_chunk(psi.platform, psi.bank, session["session"], request.SerializeToString())
    )
    learned = [
        item
        for client, item in zip(clients, mine, strict=True)
        if any(client.GetIntersectionSize(setup, response) for setup in setups)
    ]
    assert learned == [firm_code(i) for i in range(250, 300)]
    # Over persons the same attack would list persons: cardinality needs consent too.
    path = psi.tmp / "people.csv"
    ids = [f"3708021990{i:07d}X" for i in range(150)]
    path.write_text("pid,county\n" + "".join(f"{p},370811\n" for p in ids), encoding="utf-8")
    vault.register(psi.platform, psi.provider, "people", f"csv://{path}?text=pid,county", PEOPLE)
    psi_grant(psi.platform, psi.authority, psi.bank, dataset="people", column="pid")
    transport = LocalTransport(psi.platform, psi.bank)
    with pytest.raises(PolicyRefusal) as exc:
        run_psi(transport, "people", "pid", ids[:120])
    assert (exc.value.rule, exc.value.article) == ("psi_consent_required", "Art. 19")
    assert run_psi(transport, "people", "pid", ids[:120], consent="CONSENT-BATCH-9").count == 120
