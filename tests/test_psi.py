"""PSI matches in-process: correctness against Python sets, modes, limits, cache, ledger.

Real platform homes in ``tmp_path``, real datasets in the vault, the real PSI
library on both sides; the client half talks to the platform through
:class:`sandbox.psi.service.LocalTransport`, the same functions the HTTP routes call.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import private_set_intersection.python as psi_lib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.normalise import normalise, normalise_all
from jobs.psi_match import BundleKind, pack_parts, plan_chunks, unpack_parts
from policies.errors import Conflict, InputError, PolicyRefusal
from policies.psi import PsiAsk, PsiMode, PsiTerms, check_ask
from sandbox.client.psi import run_psi
from sandbox.core import ledger
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Role, insert
from sandbox.data import vault
from sandbox.psi.service import LocalTransport, open_session, process_chunk
from sandbox.psi.setup import SetupSpec, build_bundle, column_key, key_path
from sandbox.workflow import agreements
from tests.psi_helpers import PEOPLE, firm_code, psi_agreement, psi_grant, register_firms

TOML = "[psi]\nbuild_processes = 1\nchunk_items = 400\n"


class Cast:
    def __init__(self, tmp: Path):
        home = tmp / "home"
        home.mkdir()
        (home / "sandbox.toml").write_text(TOML, encoding="utf-8")
        self.tmp = tmp
        self.tokens: dict[str, str] = {}
        self.platform = Platform.init(home)
        self.provider = self._add("registry", Role.PROVIDER)
        self.authority = self._add("city", Role.AUTHORITY, "city")
        self.bank = self._add("bank", Role.OPERATOR)
        self.r1 = self._add("r1", Role.REVIEWER)
        self.r2 = self._add("r2", Role.REVIEWER)

    def _add(self, name, role, jurisdiction=None):
        with self.platform.store.transaction() as conn:
            principal, token = insert(conn, name, role, name + " org", jurisdiction, now_utc())
        self.tokens[name] = token
        return principal

    def firms(self, codes):
        return register_firms(self.platform, self.provider, self.tmp / "data", codes)

    def match(self, items, **kw):
        return run_psi(LocalTransport(self.platform, self.bank), "firms", "code", items, **kw)

    def entries(self, action):
        with self.platform.store.read() as conn:
            return ledger.query(conn, action=action)


@pytest.fixture
def cast(tmp_path):
    c = Cast(tmp_path)
    yield c
    c.platform.close()


def refusal(excinfo) -> tuple[str, str | None]:
    return excinfo.value.rule, excinfo.value.article


# --- normalisation and the pure parts ---------------------------------------------------------


def test_normalise_makes_variants_equal_and_keeps_differences():
    base = "37080219900101123X"
    for variant in [
        "37080219900101123x",
        " 37080219900101123X\t",
        "３７０８０２１９９００１０１１２３ｘ",
        "\u300037080219900101123x",
    ]:
        assert normalise(variant) == base
    assert normalise("91370800ma3c0dxk7q") == "91370800MA3C0DXK7Q"  # credit code shape
    assert normalise("Zhang San") == "Zhang San"  # not an ID: case and inner space kept
    assert normalise("ab c") != normalise("abc")
    assert normalise_all(["a", " a", None, "", "  ", "b"]) == ["a", "b"]


def test_chunks_are_near_equal_and_bundles_round_trip():
    assert plan_chunks(0, 10) == []
    assert plan_chunks(401, 400) == [201, 200]
    assert sum(plan_chunks(12345, 400)) == 12345 and max(plan_chunks(12345, 400)) <= 400
    parts = [("", b"abc"), ("370811", b"\x00" * 5)]
    assert unpack_parts(pack_parts(BundleKind.GROUPS, parts)) == (BundleKind.GROUPS, parts)
    with pytest.raises(InputError):
        unpack_parts(pack_parts(BundleKind.SHARDS, parts)[:-2])


def test_terms_checks_name_rule_and_article():
    terms = PsiTerms("firms", "code", grant_id=1, min_items=100, daily_cap=2)
    ask = PsiAsk("firms", "code", PsiMode.CARDINALITY, 150)
    assert check_ask(terms, ask, used_today=0, over_persons=False) is terms
    cases = [
        (None, ask, 0, False, ("psi_not_in_terms", "Art. 13")),
        (
            terms,
            PsiAsk("firms", "code", PsiMode.MEMBERSHIP, 150),
            0,
            False,
            ("psi_mode_not_allowed", "Art. 13"),
        ),
        (
            terms,
            PsiAsk("firms", "code", PsiMode.CARDINALITY, 1),
            0,
            False,
            ("psi_list_too_small", "Art. 15"),
        ),
        (
            terms,
            PsiAsk("firms", "code", PsiMode.CARDINALITY, 2_000_000),
            0,
            False,
            ("psi_list_too_large", "Art. 13"),
        ),
        (terms, ask, 2, False, ("psi_daily_cap", "Art. 13")),
        (
            terms,
            PsiAsk("firms", "code", PsiMode.CARDINALITY, 150, group_by="county"),
            0,
            False,
            ("psi_group_not_allowed", "Art. 13"),
        ),
    ]
    member = PsiTerms("people", "pid", mode=PsiMode.MEMBERSHIP, grant_id=1)
    cases.append(
        (
            member,
            PsiAsk("people", "pid", PsiMode.MEMBERSHIP, 150),
            0,
            True,
            ("psi_consent_required", "Art. 19"),
        )
    )
    for t, a, used, persons, expected in cases:
        with pytest.raises(PolicyRefusal) as exc:
            check_ask(t, a, used_today=used, over_persons=persons)
        assert refusal(exc) == expected
    # Cardinality over persons needs consent too: a client that encrypts each item
    # under its own key learns which items matched (docs/psi.md).
    counted = PsiAsk("people", "pid", PsiMode.CARDINALITY, 150)
    with pytest.raises(PolicyRefusal) as exc:
        check_ask(member, counted, used_today=0, over_persons=True)
    assert refusal(exc) == ("psi_consent_required", "Art. 19")
    # The cap is checked first: once used up, every request is refused for it alone.
    with pytest.raises(PolicyRefusal) as exc:
        check_ask(
            terms, PsiAsk("firms", "code", PsiMode.CARDINALITY, 1), used_today=2, over_persons=False
        )
    assert refusal(exc) == ("psi_daily_cap", "Art. 13")
    ok = PsiAsk("people", "pid", PsiMode.MEMBERSHIP, 150, consent="CONSENT-2026-001")
    assert check_ask(member, ok, used_today=0, over_persons=True) is member


# --- correctness against Python sets ------------------------------------------------------------

UNIVERSE = 120


def _id(i: int) -> str:
    return f"3708021990{i:07d}X"


def _variant(i: int, how: int) -> str:
    text = _id(i)
    if how == 1:
        return text.lower()
    if how == 2:
        return f"  {text} "
    if how == 3:
        return text.translate({c: c + 0xFEE0 for c in range(0x21, 0x7F)})
    return text


@settings(max_examples=12, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    server=st.lists(st.integers(0, UNIVERSE), min_size=1, max_size=150),
    client=st.lists(
        st.tuples(st.integers(0, UNIVERSE), st.integers(0, 3)), min_size=1, max_size=150
    ),
    membership=st.booleans(),
)
def test_matches_equal_python_set_intersection(tmp_path_factory, server, client, membership):
    cast = Cast(tmp_path_factory.mktemp("psi"))
    try:
        cast.firms([_id(i) for i in server] + [_id(i) for i in server[:5]])  # duplicates too
        psi_grant(
            cast.platform, cast.authority, cast.bank, min_items=1, daily_cap=1000, mode="membership"
        )
        items = [_variant(i, how) for i, how in client] * 2  # every item twice
        expected = {_id(i) for i, _ in client} & {_id(i) for i in server}
        mode = "membership" if membership else "cardinality"
        result = cast.match(items, mode=mode)
        assert result.count == len(expected)
        assert result.list_size == len({i for i, _ in client})
        if membership:
            assert set(result.items) == expected and len(result.items) == len(expected)
        else:
            assert result.items is None
    finally:
        cast.platform.close()


def test_group_cardinality_counts_only_groups_at_the_threshold(cast):
    codes = [firm_code(i) for i in range(1000)]
    cast.firms(codes)  # county 370830 holds every 50th firm: 20 of them
    psi_grant(
        cast.platform, cast.authority, cast.bank, group_dimensions=["county"], group_threshold=25
    )
    mine = [firm_code(i) for i in range(500, 1500)]
    result = cast.match(mine, group_by="county")
    from tests.psi_helpers import COUNTIES

    expected = {}
    for i in range(500, 1000):
        county = COUNTIES[3] if i % 50 == 0 else COUNTIES[i % 3]
        expected[county] = expected.get(county, 0) + 1
    del expected[COUNTIES[3]]  # 20 firms platform-side: under the threshold of 25
    assert result.groups == expected
    assert result.count == sum(expected.values())


# --- mode enforcement ---------------------------------------------------------------------------


def test_cardinality_client_cannot_learn_which_items_matched(cast):
    cast.firms([firm_code(i) for i in range(300)])
    psi_grant(cast.platform, cast.authority, cast.bank, min_items=10)
    session = open_session(
        cast.platform,
        cast.bank,
        {"dataset": "firms", "column": "code", "mode": "cardinality", "list_size": 200},
    )
    assert session["reveal"] is False
    mine = [firm_code(i) for i in range(200, 300)] + [f"X{i}" for i in range(100)]
    # A client that asks for the items is refused by the platform, whatever it claims.
    greedy = psi_lib.client.CreateWithNewKey(True)
    with pytest.raises(PolicyRefusal) as exc:
        process_chunk(
            cast.platform,
            cast.bank,
            session["session"],
            greedy.CreateRequest(mine[:100]).SerializeToString(),
        )
    assert refusal(exc) == ("psi_mode_not_allowed", "Art. 13")
    # Lying in the flag gets a sorted answer: the same bytes whatever the order of the list,
    # so no position in it says which item matched.
    key = greedy.GetPrivateKeyBytes()
    answers = []
    for order in (mine[:100], list(reversed(mine[:100]))):
        liar = psi_lib.client.CreateFromKey(key, True)
        request = liar.CreateRequest(order)
        request.reveal_intersection = False
        body = process_chunk(
            cast.platform, cast.bank, session["session"], request.SerializeToString()
        )
        response = psi_lib.Response()
        response.ParseFromString(body)
        elements = list(response.encrypted_elements)
        assert elements == sorted(elements)
        answers.append(body)
    assert answers[0] == answers[1]


def test_membership_refused_where_terms_say_cardinality(cast):
    cast.firms([firm_code(i) for i in range(200)])
    psi_grant(cast.platform, cast.authority, cast.bank)
    with pytest.raises(PolicyRefusal) as exc:
        cast.match([firm_code(i) for i in range(150)], mode="membership")
    assert refusal(exc) == ("psi_mode_not_allowed", "Art. 13")


# --- limits -------------------------------------------------------------------------------------


def test_limits_small_large_daily_cap_and_chunks(cast):
    cast.firms([firm_code(i) for i in range(300)])
    # The cap of 5 counts the three refused requests too: 3 refused + 2 sessions.
    psi_grant(cast.platform, cast.authority, cast.bank, min_items=100, max_items=500, daily_cap=5)
    with pytest.raises(PolicyRefusal) as exc:
        cast.match([firm_code(1)])  # a list of one is a membership probe
    assert refusal(exc) == ("psi_list_too_small", "Art. 15")
    with pytest.raises(PolicyRefusal) as exc:
        cast.match([firm_code(1)] * 500)  # repeats do not make a list longer
    assert refusal(exc) == ("psi_list_too_small", "Art. 15")
    with pytest.raises(PolicyRefusal) as exc:
        cast.match([firm_code(i) for i in range(501)])
    assert refusal(exc) == ("psi_list_too_large", "Art. 13")
    assert cast.match([firm_code(i) for i in range(250, 450)]).count == 50
    # The second session declares 200 but sends one chunk of repeats, then too many.
    session = open_session(
        cast.platform,
        cast.bank,
        {"dataset": "firms", "column": "code", "mode": "cardinality", "list_size": 200},
    )
    client = psi_lib.client.CreateWithNewKey(False)
    with pytest.raises(PolicyRefusal) as exc:
        process_chunk(
            cast.platform,
            cast.bank,
            session["session"],
            client.CreateRequest([firm_code(7)] * 150).SerializeToString(),
        )
    assert refusal(exc)[0] == "psi_chunk_too_small"
    with pytest.raises(PolicyRefusal) as exc:  # 50 distinct: under the floor of 100
        process_chunk(
            cast.platform,
            cast.bank,
            session["session"],
            client.CreateRequest([firm_code(i) for i in range(50)]).SerializeToString(),
        )
    assert refusal(exc)[0] == "psi_chunk_too_small"
    process_chunk(
        cast.platform,
        cast.bank,
        session["session"],
        client.CreateRequest([firm_code(i) for i in range(150)]).SerializeToString(),
    )
    with pytest.raises(PolicyRefusal) as exc:
        process_chunk(
            cast.platform,
            cast.bank,
            session["session"],
            client.CreateRequest([f"Z{i}" for i in range(100)]).SerializeToString(),
        )
    assert refusal(exc)[0] == "psi_over_declared"
    with pytest.raises(PolicyRefusal) as exc:  # 3 refused + 2 sessions: the cap is used up
        cast.match([firm_code(i) for i in range(150)])
    assert refusal(exc) == ("psi_daily_cap", "Art. 13")
    assert [e["details"]["rule"] for e in cast.entries("psi.refused")] == [
        "psi_list_too_small",
        "psi_list_too_small",
        "psi_list_too_large",
        "psi_daily_cap",
    ]


def test_membership_over_persons_needs_consent(cast):
    path = cast.tmp / "people.csv"
    ids = [f"3708021990{i:07d}X" for i in range(150)]
    path.write_text("pid,county\n" + "".join(f"{p},370811\n" for p in ids), encoding="utf-8")
    vault.register(cast.platform, cast.provider, "people", f"csv://{path}?text=pid,county", PEOPLE)
    psi_grant(
        cast.platform, cast.authority, cast.bank, dataset="people", column="pid", mode="membership"
    )
    transport = LocalTransport(cast.platform, cast.bank)
    with pytest.raises(PolicyRefusal) as exc:
        run_psi(transport, "people", "pid", ids[:120], mode="membership")
    assert refusal(exc) == ("psi_consent_required", "Art. 19")
    result = run_psi(
        transport, "people", "pid", ids[:120], mode="membership", consent="CONSENT-BATCH-7"
    )
    assert result.count == 120
    opened = cast.entries("psi.open")[-1]
    assert opened["details"]["consent"] == "CONSENT-BATCH-7" and opened["article"] == "Art. 19"


def test_suspended_agreement_refuses_at_open_and_between_chunks(cast):
    cast.firms([firm_code(i) for i in range(300)])
    agreement_id = psi_agreement(
        cast.platform, cast.authority, cast.bank, cast.provider, [cast.r1, cast.r2]
    )
    from sandbox.psi.terms import set_terms

    set_terms(
        cast.platform,
        cast.authority,
        dataset="firms",
        column="code",
        agreement_id=agreement_id,
        min_items=100,
    )
    assert cast.match([firm_code(i) for i in range(150)]).count == 150
    session = open_session(
        cast.platform,
        cast.bank,
        {"dataset": "firms", "column": "code", "mode": "cardinality", "list_size": 300},
    )
    agreements.suspend(cast.platform, cast.authority, agreement_id, "failed evaluation")
    client = psi_lib.client.CreateWithNewKey(False)
    with pytest.raises(PolicyRefusal) as exc:
        process_chunk(
            cast.platform,
            cast.bank,
            session["session"],
            client.CreateRequest([firm_code(i) for i in range(150)]).SerializeToString(),
        )
    assert refusal(exc) == ("agreement_suspended", "Art. 24")
    with pytest.raises(PolicyRefusal) as exc:
        cast.match([firm_code(i) for i in range(150)])
    assert refusal(exc) == ("agreement_suspended", "Art. 24")


# --- keys, cache, ledger ------------------------------------------------------------------------


def test_cache_reused_then_rebuilt_with_a_fresh_key_for_a_new_version(cast):
    cast.firms([firm_code(i) for i in range(400)])
    psi_grant(cast.platform, cast.authority, cast.bank)
    home = cast.platform.home
    transport = LocalTransport(cast.platform, cast.bank)
    cache: dict = {}
    first = run_psi(
        transport, "firms", "code", [firm_code(i) for i in range(300, 500)], cache=cache
    )
    assert first.count == 100
    second = run_psi(
        transport, "firms", "code", [firm_code(i) for i in range(350, 550)], cache=cache
    )
    assert second.count == 50
    assert len(cast.entries("psi.setup_built")) == 1  # built once, reused
    old_key = key_path(home, "firms", 1, "code")
    assert stat.S_IMODE(os.stat(old_key).st_mode) == 0o600
    assert old_key.read_bytes() not in (home / "store.sqlite").read_bytes()
    [etag_v1] = [v[0] for v in cache.values()]

    cast.firms([firm_code(i) for i in range(200, 700)])  # version 2
    third = run_psi(
        transport, "firms", "code", [firm_code(i) for i in range(300, 500)], cache=cache
    )
    assert third.version == 2 and third.count == 200
    assert len(cast.entries("psi.setup_built")) == 2
    assert column_key(home, "firms", 2, "code") != old_key.read_bytes()
    assert not (home / "psi" / "firms" / "v1").exists()  # the old bundle is gone
    assert {v[0] for v in cache.values()} - {etag_v1}


def test_ledger_has_metadata_never_items(cast):
    cast.firms([firm_code(i) for i in range(300)])
    psi_grant(cast.platform, cast.authority, cast.bank)
    mine = [firm_code(i) for i in range(250, 400)]
    result = cast.match(mine)
    opened = cast.entries("psi.open")[-1]["details"]
    assert opened == opened | {
        "dataset": "firms",
        "version": 1,
        "column": "code",
        "mode": "cardinality",
        "list_size": 150,
    }
    closed = cast.entries("psi.close")[-1]["details"]
    assert closed["result_size"] == result.count == 50 and closed["received"] == 150
    with cast.platform.store.read() as conn:
        text = json.dumps(ledger.query(conn))
    assert not any(code in text for code in mine)


def test_parallel_build_equals_serial_build(tmp_path):
    items = [firm_code(i) for i in range(600)]
    path = tmp_path / "s.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"code": items}), path)
    key = psi_lib.server.CreateWithNewKey(False).GetPrivateKeyBytes()
    spec = SetupSpec("s", 1, "code", None, 0, "raw", 1e-9, 1000)
    serial, meta1 = build_bundle(key, spec, path, 1)
    parallel, meta2 = build_bundle(key, spec, path, 2)
    assert serial == parallel and meta2["processes"] == 2 and meta1["items"] == 600


def test_gcs_false_positives_stay_under_the_bound(tmp_path):
    path = tmp_path / "s.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"code": [firm_code(i) for i in range(2000)]}), path)
    key = psi_lib.server.CreateWithNewKey(False).GetPrivateKeyBytes()
    spec = SetupSpec("s", 1, "code", None, 0, "gcs", 1e-6, 2000)
    bundle, meta = build_bundle(key, spec, path, 1)
    kind, parts = unpack_parts(bundle)
    assert kind is BundleKind.SHARDS and meta["bytes"] < 2000 * 33
    setup = psi_lib.ServerSetup()
    setup.ParseFromString(parts[0][1])
    client = psi_lib.client.CreateWithNewKey(False)
    server = psi_lib.server.CreateFromKey(key, False)
    strangers = [f"Q{i}" for i in range(2000)]  # none is in the set
    response = server.ProcessRequest(client.CreateRequest(strangers))
    assert client.GetIntersectionSize(setup, response) == 0  # P(any) <= 1e-6
    members = [firm_code(i) for i in range(0, 2000, 2)]
    response = server.ProcessRequest(client.CreateRequest(members))
    assert client.GetIntersectionSize(setup, response) == 1000


def test_session_of_another_operator_is_not_found_and_closed_sessions_stay_closed(cast):
    cast.firms([firm_code(i) for i in range(300)])
    psi_grant(cast.platform, cast.authority, cast.bank)
    rival = cast._add("rival", Role.OPERATOR)
    session = open_session(
        cast.platform,
        cast.bank,
        {"dataset": "firms", "column": "code", "mode": "cardinality", "list_size": 100},
    )
    from policies.errors import NotFound
    from sandbox.psi.service import close_session

    with pytest.raises(NotFound):
        process_chunk(cast.platform, rival, session["session"], b"")
    close_session(cast.platform, cast.bank, session["session"], 3)
    with pytest.raises(Conflict):
        process_chunk(
            cast.platform,
            cast.bank,
            session["session"],
            psi_lib.client.CreateWithNewKey(False)
            .CreateRequest([firm_code(i) for i in range(100)])
            .SerializeToString(),
        )


def test_an_empty_platform_set_matches_nothing(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "empty.parquet"
    pq.write_table(pa.table({"code": pa.array([None, " ", ""], pa.string())}), path)
    key = psi_lib.server.CreateWithNewKey(False).GetPrivateKeyBytes()
    bundle, meta = build_bundle(key, SetupSpec("e", 1, "code", None, 0, "raw", 1e-9, 100), path, 2)
    assert meta["items"] == 0
    [(_, part)] = unpack_parts(bundle)[1]
    setup = psi_lib.ServerSetup()
    setup.ParseFromString(part)
    client = psi_lib.client.CreateWithNewKey(False)
    server = psi_lib.server.CreateFromKey(key, False)
    response = server.ProcessRequest(client.CreateRequest([firm_code(i) for i in range(10)]))
    assert client.GetIntersectionSize(setup, response) == 0


def test_cli_terms_then_match_on_the_host(cast):
    from click.testing import CliRunner

    from sandbox.cli.app import main

    cast.firms([firm_code(i) for i in range(300)])
    grant_id = psi_grant(cast.platform, cast.authority, cast.bank)
    home = str(cast.platform.home)
    runner = CliRunner()
    result = runner.invoke(
        main,
        [
            "--home",
            home,
            "psi",
            "terms",
            "--grant",
            str(grant_id),
            "--dataset",
            "firms",
            "--column",
            "code",
            "--mode",
            "membership",
            "--min-items",
            "100",
            "--as",
            cast.tokens["city"],
        ],
    )
    assert result.exit_code == 0, result.output
    items = cast.tmp / "mine.csv"
    items.write_text("code\n" + "".join(f"{firm_code(i)}\n" for i in range(250, 400)))
    out = cast.tmp / "matched.csv"
    result = runner.invoke(
        main,
        [
            "--home",
            home,
            "psi",
            "--dataset",
            "firms",
            "--column",
            "code",
            "--items",
            str(items),
            "--mode",
            "membership",
            "--out",
            str(out),
            "--as",
            cast.tokens["bank"],
        ],
    )
    assert result.exit_code == 0, result.output
    assert "in the intersection: 50" in result.output
    assert out.read_text().split() == ["item"] + [firm_code(i) for i in range(250, 300)]
    result = runner.invoke(
        main,
        [
            "--home",
            home,
            "psi",
            "--dataset",
            "firms",
            "--column",
            "code",
            "--items",
            str(items),
            "--group-by",
            "county",
            "--as",
            cast.tokens["bank"],
        ],
    )
    # words first; the rule's name only at the end of the line, as every refusal's
    assert result.exit_code == 3
    assert result.output.rstrip().endswith("(Art. 13) (rule psi_group_not_allowed)")
    assert "not offered for group counts" in result.output


def test_demo_scene_runs_on_small_demo_data(cast):
    from sandbox.demo.data import DEMO_TABLES, write_demo_data
    from sandbox.demo.psi import demo_psi

    paths = write_demo_data(cast.tmp / "demo", persons=2000)
    vault.register(
        cast.platform,
        cast.provider,
        "enterprises",
        str(paths["enterprises"]),
        DEMO_TABLES["enterprises"].classification(),
    )
    agreement_id = psi_agreement(
        cast.platform,
        cast.authority,
        cast.bank,
        cast.provider,
        [cast.r1, cast.r2],
        dataset="enterprises",
    )
    lines: list[str] = []
    figures = demo_psi(
        cast.platform, lines.append, cast.bank, cast.authority, agreement_id, customers=400
    )
    assert figures["cardinality"] == figures["membership"] == figures["registered"] > 0
    assert sum(figures["groups"].values()) <= figures["registered"]
    text = "\n".join(lines)
    assert "psi_list_too_small" in text and "Art. 15" in text


def test_psi_routes_and_commands_are_documented():
    text = (Path(__file__).resolve().parents[1] / "docs" / "psi.md").read_text()
    from sandbox.api.routes_psi import router

    for route in router.routes:
        for method in route.methods:
            documented = route.path.replace("{session_id}", "{id}")
            assert f"`{method} {documented}`" in text, (method, route.path)
    for command in ("sandbox psi terms", "sandbox psi --dataset", "--group-by", "--consent"):
        assert command in text, command
