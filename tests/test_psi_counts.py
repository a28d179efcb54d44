"""PSI count sessions, the roles swapped (docs/psi.md, "Counts about persons").

The operator's items are the PSI server's set, the platform's column the client's; the
platform releases the intersection's size (per declared group) with OpenDP discrete
Laplace noise charged to the agreement's share of the person population's year. Real
openmined-psi, the real store, the real budget; the HTTP path against a real server on
loopback, the CLI too.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import private_set_intersection.python as psi_lib
import pytest
from click.testing import CliRunner
from sqlalchemy import select

from jobs.psi_match import pack_message, unpack_message
from policies.dp import discrete_laplace_variance, half_width, laplace
from policies.errors import InputError, NotFound, PolicyRefusal
from sandbox.cli.app import main
from sandbox.client import Client
from sandbox.client.psi import psi_count, run_psi_count
from sandbox.core import ledger
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.core.principals import Role, by_name, insert
from sandbox.core.store import jobs
from sandbox.guard import dp_admin, dp_budget
from sandbox.guard.tables import dp_charges
from sandbox.psi.count_answers import LocalCountTransport
from sandbox.psi.tables import psi_sessions
from sandbox.psi.terms import set_terms
from tests.api_server import ApiServer, make_home
from tests.psi_helpers import (
    DECLARED_COUNTIES,
    county_of,
    person_id,
    psi_agreement,
    register_persons,
)

YEAR = datetime.now(UTC).year
PEOPLE = 2000
TOML = "[psi]\nbuild_processes = 1\nchunk_items = 700\n"  # round 2 in parts of 700


def invented(n: int, start: int = 0) -> list[str]:
    return [f"X{i:07d}" for i in range(start, start + n)]


class World:
    """A person register ``people`` (and ``people2``, the same persons), the bank with an
    agreement on people and the rival with one on people2, PSI terms on both."""

    def __init__(self, tmp: Path, people: int = PEOPLE, toml: str = TOML):
        home = tmp / "home"
        home.mkdir()
        (home / "sandbox.toml").write_text(toml, encoding="utf-8")
        self.platform = Platform.init(home)
        self.tokens: dict[str, str] = {}
        p = self.platform
        self.provider = self._add("registry", Role.PROVIDER)
        self.city = self._add("city", Role.AUTHORITY, "city")
        self.bank = self._add("bank", Role.OPERATOR)
        self.rival = self._add("rival", Role.OPERATOR)
        reviewers = [self._add("r1", Role.REVIEWER), self._add("r2", Role.REVIEWER)]
        register_persons(p, self.provider, tmp / "data", people, "people")
        register_persons(p, self.provider, tmp / "data2", people, "people2")
        self.a = psi_agreement(p, self.city, self.bank, self.provider, reviewers, "people")
        self.b = psi_agreement(p, self.city, self.rival, self.provider, reviewers, "people2")
        for agreement, dataset in ((self.a, "people"), (self.b, "people2")):
            set_terms(
                p,
                self.city,
                dataset=dataset,
                column="pid",
                agreement_id=agreement,
                min_items=100,
                daily_cap=1000,
                group_dimensions=["county"],
            )

    def _add(self, name, role, jurisdiction=None):
        with self.platform.store.transaction() as conn:
            principal, token = insert(conn, name, role, name + " org", jurisdiction, now_utc())
        self.tokens[name] = token
        return principal

    def dp(self, per_query: float, total: float, share_a: float, share_b: float = 0.0):
        p = self.platform
        dp_admin.configure(p, self.city, self.a, "people", per_query=per_query)
        dp_admin.configure(p, self.city, self.b, "people2", per_query=per_query)
        dp_admin.set_total(p, self.city, "person", YEAR, total)
        dp_admin.set_share(p, self.city, self.a, YEAR, share_a)
        if share_b:
            dp_admin.set_share(p, self.city, self.b, YEAR, share_b)

    def count(self, items, who=None, dataset="people", **kw):
        transport = LocalCountTransport(self.platform, who or self.bank)
        return run_psi_count(transport, dataset, "pid", items, **kw)

    def charges(self) -> list[tuple[int, int, float]]:
        with self.platform.store.read() as conn:
            rows = conn.execute(select(dp_charges).order_by(dp_charges.c.job_id))
            return [(r.job_id, r.agreement_id, r.epsilon) for r in rows]

    def sessions(self) -> list[tuple[str, str]]:
        with self.platform.store.read() as conn:
            rows = conn.execute(select(psi_sessions).order_by(psi_sessions.c.id))
            return [(r.mode, r.status) for r in rows]

    def job(self, job_id: int):
        with self.platform.store.read() as conn:
            return conn.execute(select(jobs).where(jobs.c.id == job_id)).one()


@pytest.fixture
def w(tmp_path):
    world = World(tmp_path)
    yield world
    world.platform.close()


def last_job(w: World) -> int:
    with w.platform.store.read() as conn:
        return conn.execute(select(jobs.c.id).order_by(jobs.c.id.desc())).scalars().first()


# --- the noise ---------------------------------------------------------------------------------


def test_released_count_is_the_true_size_plus_opendp_noise_of_the_stated_scale(tmp_path):
    """Over many sessions the released count minus the true size has the discrete Laplace
    distribution of the stated scale: mean 0, its variance, its mass at 0. Without the
    noise every answer would be the true size and the variance 0."""
    w = World(tmp_path, people=300)  # a small column: 150 sessions in seconds
    w.dp(per_query=1.0, total=10_000, share_a=10_000)
    mine = [person_id(i) for i in range(60)] + invented(40)  # 60 of 100 in the column
    sessions = 150
    errors, scales = [], set()
    for _ in range(sessions):
        result = w.count(mine)
        errors.append(result.count - 60)
        scales.add(result.noise["scale"])
        assert result.noise["half_width_95"] == half_width(result.noise["scale"])
    (scale,) = scales
    assert scale == laplace(1, 1.0)[1] and 1.0 <= scale < 1.0 + 1e-9
    variance = discrete_laplace_variance(scale)  # 1.84 at scale 1
    mean = sum(errors) / sessions
    assert abs(mean) < 4 * math.sqrt(variance / sessions)
    observed = sum(e * e for e in errors) / sessions
    assert 0.55 * variance < observed < 1.6 * variance
    q = math.exp(-1 / scale)
    zero = (1 - q) / (1 + q)  # P(noise = 0) = 0.46
    share = errors.count(0) / sessions
    assert abs(share - zero) < 4 * math.sqrt(zero * (1 - zero) / sessions)
    inside = sum(abs(e) <= result.noise["half_width_95"] for e in errors) / sessions
    assert inside > 0.88
    assert len(w.charges()) == sessions  # one charge per session, each of per_query
    assert all(c[2] == 1.0 for c in w.charges())
    w.platform.close()


# --- the budget --------------------------------------------------------------------------------


def test_each_session_is_charged_and_a_refusal_spends_nothing(w):
    w.dp(per_query=0.5, total=4.0, share_a=1.0)
    mine = [person_id(i) for i in range(80)] + invented(70)
    first = w.count(mine)
    second = w.count(mine)
    assert [c[0] for c in w.charges()] == [first.job, second.job]
    assert second.budget["remaining"] == 0.0
    assert w.job(first.job).status == "released" and w.job(first.job).kind == "psi_count"
    with pytest.raises(PolicyRefusal) as excinfo:
        w.count(mine)
    assert excinfo.value.rule == "dp_budget_exhausted"
    assert "0 of its share of 1 left" in str(excinfo.value) and "nothing was spent" in str(
        excinfo.value
    )
    assert len(w.charges()) == 2  # the refusal spent nothing
    refused = last_job(w)
    assert w.job(refused).status == "refused"
    # the refused session counts toward the daily cap like any other
    assert w.sessions() == [("count", "closed"), ("count", "closed"), ("count", "refused")]


def test_refusals_are_decided_before_anything_is_computed(w):
    mine = [person_id(i) for i in range(80)] + invented(70)
    with pytest.raises(PolicyRefusal) as excinfo:  # no DP mode for the agreement yet
        w.count(mine)
    assert excinfo.value.rule == "psi_count_no_budget"
    w.dp(per_query=0.5, total=4.0, share_a=1.0)
    with pytest.raises(PolicyRefusal) as excinfo:  # not granted people2
        w.count(mine, dataset="people2")
    assert excinfo.value.rule == "not_granted"
    with pytest.raises(PolicyRefusal) as excinfo:
        w.count(mine, group_by="age")
    assert excinfo.value.rule == "psi_group_not_public"
    with pytest.raises(PolicyRefusal) as excinfo:  # the minimum stays, as a usability rule
        w.count(mine[:20])
    assert excinfo.value.rule == "psi_list_too_small"
    assert w.charges() == []
    assert {s for s in w.sessions()} == {("count", "refused")}
    with w.platform.store.read() as conn:
        statuses = conn.execute(select(jobs.c.status)).scalars().all()
    assert set(statuses) == {"refused"}


def test_two_agreements_on_one_person_population_share_its_yearly_cap(w):
    """people and people2 hold the same persons: two agreements, two datasets, one
    population-year; both draw on one total and the last one is refused naming it."""
    w.dp(per_query=0.5, total=1.0, share_a=0.5, share_b=0.5)
    mine = [person_id(i) for i in range(80)] + invented(70)
    a = w.count(mine)
    b = w.count(mine, who=w.rival, dataset="people2")
    assert [(c[0], c[1]) for c in w.charges()] == [(a.job, w.a), (b.job, w.b)]
    with w.platform.store.read() as conn:
        current = dp_budget.balance(conn, w.a, "person", YEAR)
    assert current.total_spent == 1.0 and current.total_remaining == 0.0
    for who, dataset in ((w.bank, "people"), (w.rival, "people2")):
        with pytest.raises(PolicyRefusal) as excinfo:
            w.count(mine, who=who, dataset=dataset)
        assert excinfo.value.rule == "dp_budget_exhausted"
        assert "the person population has 0 of 1 left" in str(excinfo.value)
    assert len(w.charges()) == 2


# --- groups ------------------------------------------------------------------------------------


def test_one_count_per_declared_group_and_none_for_other_values(w):
    w.dp(per_query=2.0, total=100.0, share_a=100.0)
    mine = [person_id(i) for i in range(400)] + invented(100)
    result = w.count(mine, group_by="county")
    assert list(result.groups) == list(DECLARED_COUNTIES)  # the empty 370899 too
    assert result.count == sum(result.groups.values())
    truth = {c: 0 for c in DECLARED_COUNTIES}
    for i in range(400):
        if county_of(i) is not None:
            truth[county_of(i)] += 1
    width = result.noise["half_width_95"]
    # scale 0.5: each group within a few units of its true size
    assert all(abs(result.groups[c] - truth[c]) <= 3 * width + 2 for c in truth)


def test_an_item_in_two_groups_is_refused_before_anything_runs(w, tmp_path):
    """One pid under two counties would move two counts: refused, nothing spent."""
    from sandbox.data import vault
    from tests.psi_helpers import PERSONS_COUNTED

    w.dp(per_query=0.5, total=10.0, share_a=5.0)
    path = tmp_path / "twice.csv"
    rows = [f"{person_id(i)},{county_of(i) or ''},30" for i in range(PEOPLE)]
    rows.append(f"{person_id(1)},{DECLARED_COUNTIES[0]},31")  # person 1 is in 370812 too
    path.write_text("pid,county,age\n" + "\n".join(rows) + "\n", encoding="utf-8")
    vault.register(
        w.platform, w.provider, "people", f"csv://{path}?text=pid,county", PERSONS_COUNTED
    )
    mine = [person_id(i) for i in range(80)] + invented(70)
    with pytest.raises(PolicyRefusal) as excinfo:
        w.count(mine, group_by="county")
    assert excinfo.value.rule == "dp_contributions"
    assert w.charges() == []
    assert w.count(mine).count >= 0  # ungrouped, the item counts once


# --- what the operator sees of the platform's column -------------------------------------------


def open_round(w: World, items: list[str]) -> tuple[dict, bytes]:
    server = psi_lib.server.CreateWithNewKey(False)
    setup = server.CreateSetupMessage(1e-9, 1, items, psi_lib.DataStructure.RAW)
    body = pack_message({"dataset": "people", "column": "pid"}, setup.SerializeToString())
    return unpack_message(LocalCountTransport(w.platform, w.bank).count_open(body))


def test_the_platforms_request_reveals_no_item(w):
    """One real item and 99 invented ones: the platform's request is its whole column under
    a fresh key per session, the same size whatever the operator's list, sharing no
    element with another session's and holding no item in the clear; the answer is the
    true size plus noise (above), so the count cannot say whether the one item is in."""
    w.dp(per_query=1.0, total=100.0, share_a=100.0)
    probe = [person_id(7)] + invented(99)
    blank = invented(100, start=500)
    h1, r1 = open_round(w, probe)
    h2, r2 = open_round(w, probe)
    h3, r3 = open_round(w, blank)
    sets = []
    for header, raw in ((h1, r1), (h2, r2), (h3, r3)):
        request = psi_lib.Request()
        request.ParseFromString(raw)
        assert header["request_size"] == len(request.encrypted_elements) == PEOPLE
        assert header["reveal"] is False and header["groups"] is None
        sets.append(set(request.encrypted_elements))
        assert person_id(7).encode() not in raw and b"P000" not in raw
    assert not sets[0] & sets[1] and not sets[0] & sets[2] and not sets[1] & sets[2]
    assert len(r1) == len(r3)  # the request does not depend on the operator's list
    assert w.charges() == []  # nothing is charged before an answer is released


def test_a_crafted_response_is_refused_and_the_session_stays_open(w):
    """An answer that repeats elements, within a part or from another part, could count a
    person twice: refused before anything is counted; the session can still be answered
    once, part by part, then never again."""
    w.dp(per_query=1.0, total=100.0, share_a=100.0)
    mine = [person_id(i) for i in range(50)] + invented(50)
    server = psi_lib.server.CreateWithNewKey(False)
    setup = server.CreateSetupMessage(1e-9, 1, mine, psi_lib.DataStructure.RAW)
    body = pack_message({"dataset": "people", "column": "pid"}, setup.SerializeToString())
    transport = LocalCountTransport(w.platform, w.bank)
    header, raw = unpack_message(transport.count_open(body))
    request = psi_lib.Request()
    request.ParseFromString(raw)
    step = header["part_items"]
    assert step == 700 and header["request_size"] == PEOPLE

    def part(k: int) -> list[bytes]:
        piece = psi_lib.Request()
        piece.encrypted_elements.extend(request.encrypted_elements[k * step : (k + 1) * step])
        return list(server.ProcessRequest(piece).encrypted_elements)

    def body_of(elements: list[bytes]) -> bytes:
        response = psi_lib.Response()
        response.encrypted_elements.extend(elements)
        return response.SerializeToString()

    first, second, third = part(0), part(1), part(2)
    session = header["session"]
    with pytest.raises(InputError):  # a repeat within the part
        transport.count_respond(session, body_of(first[:-1] + first[:1]), 0)
    assert transport.count_respond(session, body_of(first), 0) == {
        "session": session,
        "job": header["job"],
        "parts": 3,
        "answered": 1,
    }
    with pytest.raises(InputError):  # an element of part 0 again in part 1
        transport.count_respond(session, body_of(second[:-1] + first[:1]), 1)
    with pytest.raises(InputError):  # one element short
        transport.count_respond(session, body_of(second[:-1]), 1)
    assert w.charges() == []
    assert transport.count_respond(session, body_of(second), 1)["answered"] == 2
    answer = transport.count_respond(session, body_of(third), 2)
    assert answer["job"] == header["job"] and len(w.charges()) == 1
    assert abs(answer["count"] - 50) <= 3 * answer["noise"]["half_width_95"] + 3
    response = body_of(third)
    with pytest.raises(NotFound):  # a match-session route does not serve it
        from sandbox.psi.service import setup_of

        setup_of(w.platform, w.bank, header["session"])
    from policies.errors import Conflict

    with pytest.raises(Conflict):
        transport.count_respond(header["session"], response, 2)
    assert len(w.charges()) == 1
    with w.platform.store.read() as conn:  # every step ledgered, never an item
        rows = ledger.query(conn)
    text = json.dumps([r["details"] for r in rows])
    assert person_id(3) not in text and "X0000001" not in text
    actions = [r["action"] for r in rows]
    for action in ("job.submitted", "job.queued", "job.running", "psi.count.open"):
        assert action in actions
    for action in ("psi.count.part", "psi.count", "dp.spend", "job.checking", "job.released"):
        assert action in actions


# --- over HTTP and the CLI ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("psi-counts-api")
    home = tmp / "home"
    tokens = make_home(home, TOML)
    platform = Platform.open(home)
    try:
        with platform.store.read() as conn:
            provider = by_name(conn, "provider")
            city = by_name(conn, "authority")
            operator = by_name(conn, "operator")
            reviewer = by_name(conn, "reviewer")
        with platform.store.transaction() as conn:
            second, _ = insert(conn, "reviewer2", Role.REVIEWER, "r2", None, now_utc())
        register_persons(platform, provider, tmp / "data", PEOPLE)
        agreement = psi_agreement(platform, city, operator, provider, [reviewer, second], "people")
        set_terms(
            platform,
            city,
            dataset="people",
            column="pid",
            agreement_id=agreement,
            min_items=100,
            daily_cap=100,
            group_dimensions=["county"],
        )
        dp_admin.configure(platform, city, agreement, "people", per_query=1.0)
        dp_admin.set_total(platform, city, "person", YEAR, 50.0)
        dp_admin.set_share(platform, city, agreement, YEAR, 50.0)
    finally:
        platform.close()
    with ApiServer(home) as server:
        yield server, tokens, tmp


def test_both_rounds_over_http_and_the_cli(served):
    server, tokens, tmp = served
    mine = [person_id(i) for i in range(300)] + invented(200)
    with Client(server.url, tokens["operator"]) as api:
        counted = psi_count(api, "people", "pid", mine)
        grouped = psi_count(api, "people", "pid", mine, group_by="county")
        with pytest.raises(PolicyRefusal) as excinfo:
            psi_count(api, "people", "pid", mine, group_by="age")
        assert excinfo.value.rule == "psi_group_not_public"
    assert abs(counted.count - 300) <= 3 * counted.noise["half_width_95"] + 3
    assert list(grouped.groups) == list(DECLARED_COUNTIES)
    assert counted.budget["remaining"] == 49.0 and grouped.budget["remaining"] == 48.0
    items = tmp / "mine.csv"
    items.write_text("pid\n" + "\n".join(mine) + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        main,
        ["--server", server.url, "psi", "count", "--dataset", "people", "--column", "pid"]
        + ["--items", str(items), "--group-by", "county", "--json", "--as", tokens["operator"]],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert list(data["groups"]) == list(DECLARED_COUNTIES) and data["noise"]["scale"] >= 1.0


def test_an_unanswered_session_expires_and_spends_nothing(w):
    from datetime import timedelta

    from sandbox.psi.counts import EXPIRY_S, expire

    w.dp(per_query=1.0, total=100.0, share_a=100.0)
    header, _ = open_round(w, [person_id(i) for i in range(100)])
    home = w.platform.home
    assert (home / "keys" / "psi" / "count" / f"{header['session']}.key").exists()
    assert expire(w.platform) == []  # not yet
    later = datetime.now(UTC) + timedelta(seconds=EXPIRY_S + 1)
    assert expire(w.platform, later) == [header["session"]]
    assert not (home / "keys" / "psi" / "count" / f"{header['session']}.key").exists()
    assert not (home / "psi-count" / str(header["session"])).exists()
    assert w.sessions() == [("count", "expired")]
    assert w.job(header["job"]).status == "failed" and w.charges() == []


def test_the_request_order_is_drawn_anew_per_session(w):
    """The platform's request is its column in a random order per session, so a crafted
    answer cannot aim at a person by position (docs/psi.md, Limits)."""
    import json as json_

    w.dp(per_query=1.0, total=100.0, share_a=100.0)
    server = psi_lib.server.CreateWithNewKey(False)
    setup = server.CreateSetupMessage(1e-9, 1, invented(100), psi_lib.DataStructure.RAW)
    orders = []
    for _ in range(2):
        header = {"dataset": "people", "column": "pid", "group_by": "county"}
        body = pack_message(header, setup.SerializeToString())
        opened, _ = unpack_message(LocalCountTransport(w.platform, w.bank).count_open(body))
        assert opened["reveal"] is True and opened["groups"] == list(DECLARED_COUNTIES)
        meta = w.platform.home / "psi-count" / str(opened["session"]) / "meta.json"
        orders.append(json_.loads(meta.read_text())["positions"])
    assert sorted(orders[0]) == sorted(orders[1]) and orders[0] != orders[1]


def test_the_cli_on_the_platforms_host(w):
    w.dp(per_query=1.0, total=100.0, share_a=100.0)
    items = w.platform.home.parent / "mine.csv"
    mine = [person_id(i) for i in range(120)] + invented(30)
    items.write_text("pid\n" + "\n".join(mine) + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        main,
        ["--home", str(w.platform.home), "psi", "count", "--dataset", "people"]
        + ["--column", "pid", "--items", str(items), "--as", w.tokens["bank"]],
    )
    assert result.exit_code == 0, result.output
    assert "your list: 150 distinct items; in the column, with noise:" in result.output
    assert "+- " in result.output and "epsilon 1" in result.output
    assert len(w.charges()) == 1


def test_a_large_column_is_encrypted_in_processes_with_the_same_answer(tmp_path, monkeypatch):
    """From PARALLEL_FROM items the platform's request is built in psi.build_processes
    processes (shards under the session key, in order): the per-group counts stay right."""
    from sandbox.psi import count_request

    monkeypatch.setattr(count_request, "PARALLEL_FROM", 100)
    w = World(tmp_path, toml=TOML.replace("build_processes = 1", "build_processes = 2"))
    try:
        w.dp(per_query=4.0, total=100.0, share_a=100.0)
        result = w.count([person_id(i) for i in range(800)], group_by="county")
        truth = {c: 0 for c in DECLARED_COUNTIES}
        for i in range(800):
            if county_of(i) is not None:
                truth[county_of(i)] += 1
        assert result.sizes["request"] > 35 * PEOPLE - 100
        assert all(abs(result.groups[c] - truth[c]) <= 6 for c in truth)  # scale 0.25
    finally:
        w.platform.close()
