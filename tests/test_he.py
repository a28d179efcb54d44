"""HE aggregate jobs: the policy, the request format, and the platform path in-process.

Real parts throughout: TenSEAL contexts and ciphertexts, the vault's Parquet
snapshot, DuckDB, the worker processes, the store and its ledger.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from jobs import he_aggregate as wire
from jobs.he_aggregate import (
    GroupVerdict,
    HeRequest,
    Scheme,
    check_security,
    judge_groups,
    plan_he,
)
from policies.disclosure import DisclosureParams
from policies.errors import InputError, PolicyRefusal
from sandbox.client import he as client_he
from sandbox.core.principals import Role
from sandbox.he import evaluate as he_evaluate
from sandbox.he import service as he
from sandbox.he import upload as he_upload
from tests.he_helpers import (
    COUNTIES,
    REGISTRY,
    SMALL_COUNTY,
    agreement_grant,
    direct_grant,
    expected_sums,
    register_registry,
)


@pytest.fixture(scope="module")
def ckks():
    return client_he.make_context("ckks")


@pytest.fixture(scope="module")
def bfv():
    return client_he.make_context("bfv")


@pytest.fixture
def bank(platform, provider, make_principal, tmp_path):
    """A registry, an authority's direct HE grant to the operator ``bank``."""
    table = register_registry(platform, provider, tmp_path)
    authority, _ = make_principal("city", Role.AUTHORITY, jurisdiction="city")
    operator, token = make_principal("bank", Role.OPERATOR)
    direct_grant(platform, authority, "bank")
    return platform, operator, table, token


def _rows(table, n, extra_unknown=0):
    keys = table.column("code").to_pylist()[:n] + [f"X{i:05d}" for i in range(extra_unknown)]
    return keys


def _ledger(platform, action):
    from sandbox.core import ledger

    with platform.store.read() as conn:
        return [e for e in ledger.query(conn) if e["action"] == action]


# --------------------------------------------------------------------------- policy


def test_plan_refuses_a_non_identifier_key_and_a_non_public_group():
    params = DisclosureParams()
    with pytest.raises(PolicyRefusal) as key:
        plan_he(HeRequest("registry", "county", ("industry",)), REGISTRY, params)
    assert key.value.rule == "he_key_not_identifier" and key.value.article == "Art. 15"
    for column in ("capital", "founded", "name", "status"):
        with pytest.raises(PolicyRefusal) as group:
            plan_he(HeRequest("registry", "code", (column,)), REGISTRY, params)
        assert group.value.rule == "he_group_not_public" and group.value.subject == column
        assert group.value.article == "Art. 15" and "public" in str(group.value)
    with pytest.raises(InputError, match="did you mean 'county'"):
        plan_he(HeRequest("registry", "code", ("countyy",)), REGISTRY, params)
    plan = plan_he(HeRequest("registry", "code", ("county", "industry")), REGISTRY, params)
    assert plan.min_subjects == 10 and plan.entity_key == "code" and plan.scheme is Scheme.CKKS


def test_security_floor_and_group_threshold():
    check_security(Scheme.CKKS, 8192, [60, 40, 40, 60])
    with pytest.raises(PolicyRefusal) as low:
        check_security(Scheme.CKKS, 8192, [60, 60, 60, 60])
    assert low.value.rule == "he_parameters_below_floor" and low.value.article == "Art. 19"
    with pytest.raises(PolicyRefusal):
        check_security(Scheme.BFV, 2048, [54])
    decisions = judge_groups({("a",): 10, ("b",): 9, (None,): 30}, 10)
    assert [(d.group, d.verdict) for d in decisions] == [
        (("a",), GroupVerdict.RELEASE),
        (("b",), GroupVerdict.REFUSE),
        ((None,), GroupVerdict.RELEASE),
    ]


def test_unpack_refuses_malformed_bodies():
    body = wire.pack({"a": 1}, [b"xy", b"z"])
    assert wire.unpack(body, max_frames=2, max_frame=10)[0] == {"a": 1}
    for bad in (b"nope", body[:-1], body + b"!", body[:8]):
        with pytest.raises(InputError, match="malformed"):
            wire.unpack(bad, max_frames=2, max_frame=10)
    with pytest.raises(InputError, match="frames"):
        wire.unpack(body, max_frames=1, max_frame=10)
    with pytest.raises(InputError, match="size limit"):
        wire.unpack(body, max_frames=2, max_frame=1)


# --------------------------------------------------------------------------- platform


def test_ckks_sums_match_plain_sums_and_small_groups_are_refused(bank, ckks):
    platform, operator, table, _token = bank
    rng = np.random.default_rng(11)
    keys = _rows(table, 500, extra_unknown=40)
    order = rng.permutation(len(keys))  # the operator's own order, unrelated to groups
    keys = [keys[i] for i in order]
    values = (rng.lognormal(11, 1.5, len(keys))).round(2).tolist()
    body = client_he.build_request(ckks, "registry", "code", ["county"], keys, values)
    answer = he.he_sum(platform, operator, body)
    result = client_he.decrypt_answer(ckks, answer.to_bytes())
    expected = expected_sums(table, "code", ["county"], keys, values)
    got = {(g.group["county"],): g for g in result.groups}
    assert set(got) == {(c,) for c in COUNTIES}  # the small county is not returned
    for group, (total, count) in expected.items():
        if group == (SMALL_COUNTY,):
            continue
        assert got[group].subjects == count
        assert got[group].sum == pytest.approx(total, rel=1e-6)
        assert got[group].mean == pytest.approx(total / count, rel=1e-6)
    # Nothing says the small county was withheld, nor how many keys matched nothing.
    for word in ("refused", "differenced", "unmatched", "ambiguous", "list_size"):
        assert word not in answer.header
    assert len(answer.to_bytes()) < 2 * 1024 * 1024
    (entry,) = _ledger(platform, "he.sum")
    details = entry["details"]  # the auditors' view keeps the counts and the reasons
    assert details["list_size"] == len(keys) and details["groups"] == 4
    assert details["groups_refused"] == 1 and details["unmatched"] == 40
    assert details["withheld"] == [{"group": [SMALL_COUNTY], "reason": "min_entities"}]
    text = json.dumps(entry)
    assert keys[0] not in text and str(values[0]) not in text


def test_bfv_sums_are_exact_with_two_group_columns(bank, bfv):
    platform, operator, table, _token = bank
    rng = np.random.default_rng(5)
    keys = table.column("code").to_pylist()[4:404] + [f"X{i}" for i in range(7)]
    values = rng.integers(-5_000, 2_000_000, len(keys)).tolist()
    body = client_he.build_request(
        bfv, "registry", "code", ["county", "industry"], keys, values, "bfv"
    )
    result = client_he.decrypt_answer(bfv, he.he_sum(platform, operator, body).to_bytes())
    expected = expected_sums(table, "code", ["county", "industry"], keys, values)
    got = {(g.group["county"], g.group["industry"]): g for g in result.groups}
    assert got and set(got) == {g for g, (_s, n) in expected.items() if n >= 10}
    for group, g in got.items():
        assert (g.sum, g.subjects) == expected[group]
    details = _ledger(platform, "he.sum")[-1]["details"]
    assert details["unmatched"] == 7 and details["ambiguous"] == 0  # for auditors only


def test_ambiguous_keys_join_no_group(bank, bfv):
    platform, operator, table, _token = bank
    names = list(dict.fromkeys(table.column("name").to_pylist()[8:300]))
    values = [1] * len(names)
    body = client_he.build_request(bfv, "registry", "name", ["county"], names, values, "bfv")
    result = client_he.decrypt_answer(bfv, he.he_sum(platform, operator, body).to_bytes())
    # SHARED-0..4 name enterprises in two counties (the ledger says so, not the answer)
    assert _ledger(platform, "he.sum")[-1]["details"]["ambiguous"] == 5
    assert sum(g.sum for g in result.groups) == sum(g.subjects for g in result.groups)
    assert sum(g.subjects for g in result.groups) == len(names) - 5


def _body_with_context(ctx_bytes, keys, values, scheme=Scheme.CKKS, by=("county",), ctx=None):
    frames = [ctx_bytes, "\n".join(keys).encode()] + client_he.encrypt_values(ctx, values, scheme)
    header = {
        "dataset": "registry",
        "key_column": "code",
        "by": list(by),
        "scheme": scheme.value,
        "values": len(keys),
        "sha256": wire.frames_digest(frames),
    }
    return wire.pack(header, frames)


def test_a_context_with_its_secret_key_is_refused_and_ledgered(bank, ckks):
    platform, operator, table, _token = bank
    keys = _rows(table, 20)
    private = ckks.serialize(save_secret_key=True)
    body = _body_with_context(private, keys, [1.0] * 20, ctx=ckks)
    with pytest.raises(PolicyRefusal) as refused:
        he.he_sum(platform, operator, body)
    assert refused.value.rule == "he_secret_key_sent" and refused.value.article == "Art. 19"
    (entry,) = _ledger(platform, "he.refused")
    assert entry["details"]["rule"] == "he_secret_key_sent"
    assert not _ledger(platform, "he.sum")


def test_the_platform_only_ever_holds_a_public_context(ckks, bfv, tmp_path):
    for ctx, scheme in ((ckks, Scheme.CKKS), (bfv, Scheme.BFV)):
        loaded = he_upload.load_public_context(client_he.public_context(ctx), scheme)
        assert loaded.is_private() is False and not loaded.has_secret_key()
        assert loaded.has_galois_keys() and not loaded.has_relin_keys()
    # The worker refuses a private context even if the caller's check were skipped.
    with pytest.raises(PolicyRefusal):
        he_evaluate.evaluate_share(
            ckks.serialize(save_secret_key=True),
            [],
            np.zeros(0, np.int32),
            (0, 1),
            1,
            Scheme.CKKS,
            tmp_path / "out.bin",
        )
    with pytest.raises(InputError, match="request says bfv"):
        he_upload.load_public_context(client_he.public_context(ckks), Scheme.BFV)


def _decrypt_slots(ctx, answer: bytes, tmp_path) -> np.ndarray:
    import tenseal.sealapi as sa

    seal = ctx.seal_context().data
    (tmp_path / "answer.bin").write_bytes(answer)
    ct, plain = sa.Ciphertext(), sa.Plaintext()
    ct.load(seal, str(tmp_path / "answer.bin"))
    sa.Decryptor(seal, ctx.secret_key().data).decrypt(ct, plain)
    return np.asarray(sa.CKKSEncoder(seal).decode_complex(plain))


def test_paired_ckks_ciphertexts_give_the_totals_and_nothing_else(ckks, tmp_path):
    """Two CKKS ciphertexts ride one mask (sandbox.he.share): three ciphertexts (a pair
    and one alone) over two workers. Each group's total is in its slot; the lanes no
    group holds are zero and every imaginary part is zero (the answer's conjugate is
    added), so the pairing leaves nothing else in the answer."""
    from sandbox.he import share as he_share

    public = client_he.public_context(ckks)
    assert he_share.Kit.of(public, Scheme.CKKS).paired
    rng = np.random.default_rng(17)
    n = 2 * wire.SLOTS + 1_000
    values = rng.lognormal(11, 1.5, n).round(2)
    labels = rng.integers(-1, 5, n).astype(np.int32)  # -1: joins no group
    ciphertexts = client_he.encrypt_values(ckks, values.tolist(), Scheme.CKKS)
    assert len(ciphertexts) == 3
    work = tmp_path / "work"
    work.mkdir()
    answer, _ = he_evaluate.evaluate(
        work, public, ciphertexts, labels, 5, Scheme.CKKS, 2, 300.0, 4096
    )
    slots = _decrypt_slots(ckks, answer, tmp_path)
    expected = np.bincount(labels[labels >= 0], weights=values[labels >= 0], minlength=5)
    lanes = slots.reshape(-1, 8)  # 5 groups: lanes of width 8, copies every 8 slots
    assert np.allclose(lanes.real[:, :5], expected, rtol=1e-9)
    assert np.abs(lanes.real[:, 5:]).max() < 1.0  # noise only, against totals of ~1e8
    assert np.abs(slots.imag).max() < 1.0


def test_duplicate_keys_are_refused_as_a_count(bank, ckks):
    platform, operator, table, _token = bank
    keys = _rows(table, 30) + _rows(table, 2)
    with pytest.raises(InputError, match="2 key"):
        client_he.build_request(ckks, "registry", "code", ["county"], keys, [1.0] * 32)
    body = _body_with_context(client_he.public_context(ckks), keys, [1.0] * 32, ctx=ckks)
    with pytest.raises(InputError, match="2 key") as refused:
        he.he_sum(platform, operator, body)
    assert keys[0] not in str(refused.value)


def test_tampered_bodies_and_ciphertexts_are_refused(bank, ckks):
    platform, operator, table, _token = bank
    keys = _rows(table, 50)
    body = bytearray(
        client_he.build_request(ckks, "registry", "code", ["county"], keys, [2.0] * 50)
    )
    body[-1000] ^= 0xFF  # inside the ciphertext: the frames no longer match their digest
    with pytest.raises(InputError, match="SHA-256"):
        he.he_sum(platform, operator, bytes(body))
    # An attacker who also rewrites the digest: the ciphertext itself is refused.
    header, frames = wire.unpack(bytes(body), max_frames=10, max_frame=1 << 26)
    frames = [bytes(f) for f in frames]
    frames[2] = frames[2][:100] + bytes(len(frames[2]) - 100)
    header["sha256"] = wire.frames_digest(frames)
    with pytest.raises(InputError, match="ciphertext 0"):
        he.he_sum(platform, operator, wire.pack(header, frames))


def test_refused_without_grant_and_under_a_suspended_agreement(
    platform, provider, make_principal, tmp_path, ckks
):
    from sandbox.workflow import supervision
    from tests.workflow_helpers import make_cast

    table = register_registry(platform, provider, tmp_path)
    cast = make_cast(platform, make_principal, provider)
    keys = _rows(table, 40)
    body = client_he.build_request(ckks, "registry", "code", ["county"], keys, [1.0] * 40)
    with pytest.raises(PolicyRefusal) as none:
        he.he_sum(platform, cast.operator, body)
    assert none.value.rule == "not_granted" and none.value.article == "Art. 14"
    agreement_id = agreement_grant(cast)
    he.he_sum(platform, cast.operator, body)  # active: runs
    supervision.evaluate(
        platform,
        cast.city,
        agreement_id,
        passed=False,
        notes="late reports",
        deadline=datetime.now(UTC) + timedelta(days=30),
    )
    with pytest.raises(PolicyRefusal) as suspended:
        he.he_sum(platform, cast.operator, body)
    assert suspended.value.rule == "agreement_suspended"
    assert suspended.value.article == "Art. 24"


@pytest.mark.slow  # a fresh BFV context with Galois keys: several seconds
def test_cli_he_sum_in_process(bank, tmp_path):
    from click.testing import CliRunner

    from sandbox.cli.app import main

    platform, operator, table, token = bank
    csv = tmp_path / "loans.csv"
    lines = ["code,balance"] + [f"{k},{i}" for i, k in enumerate(_rows(table, 200))]
    csv.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = CliRunner().invoke(
        main,
        [
            "--home",
            str(platform.home),
            "he",
            "sum",
            "--dataset",
            "registry",
            "--key-column",
            "code",
            "--by",
            "county",
            "--keys-and-values",
            str(csv),
            "--scheme",
            "bfv",
            "--as",
            token,
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    expected = expected_sums(table, "code", ["county"], _rows(table, 200), list(range(200)))
    for row in data["groups"]:
        assert (row["sum"], row["subjects"]) == expected[(row["county"],)]
    assert SMALL_COUNTY not in {row["county"] for row in data["groups"]}
    assert "groups_refused" not in data and "unmatched" not in data


def test_a_group_one_subject_away_from_an_earlier_answer_is_withheld(bank, bfv):
    """The differencing defence over HE answers: the same list again is answered in
    full (nothing new is learnt); the list plus one enterprise of county X would give
    that enterprise's value by difference, so county X is withheld and the others
    are still summed exactly."""
    platform, operator, table, _token = bank
    codes = table.column("code").to_pylist()
    counties = table.column("county").to_pylist()
    first = codes[20:320]
    extra = next(c for c, k in zip(codes[320:], counties[320:], strict=True) if k == COUNTIES[0])
    rng = np.random.default_rng(7)
    values = dict(zip(codes, rng.integers(0, 100_000, len(codes)).tolist(), strict=True))

    def ask(keys):
        body = client_he.build_request(
            bfv, "registry", "code", ["county"], keys, [values[k] for k in keys], "bfv"
        )
        return client_he.decrypt_answer(bfv, he.he_sum(platform, operator, body).to_bytes())

    before = ask(first)
    assert {g.group["county"] for g in before.groups} == set(COUNTIES)
    again = ask(first)
    assert [(g.group, g.sum) for g in again.groups] == [(g.group, g.sum) for g in before.groups]
    probe = ask([*first, extra])
    assert {g.group["county"] for g in probe.groups} == set(COUNTIES) - {COUNTIES[0]}
    expected = expected_sums(
        table, "code", ["county"], [*first, extra], [values[k] for k in [*first, extra]]
    )
    for g in probe.groups:  # the withheld group's entries went into no other group
        assert (g.sum, g.subjects) == expected[(g.group["county"],)]
    last = _ledger(platform, "he.sum")[-1]["details"]
    assert last["groups_differenced"] == 1
    assert {"group": [COUNTIES[0]], "reason": "differencing"} in last["withheld"]
    from sandbox.guard.tables import released_request_cells

    with platform.store.read() as conn:
        kept = conn.execute(released_request_cells.select()).fetchall()
    # Three answers' released groups are in the history, none of the withheld one.
    assert len(kept) == 2 * len(before.groups) + len(probe.groups)
    assert all(row.kind == "he.sum" and row.principal_id == operator.id for row in kept)


# --------------------------------------------------------------------------- job rows


def test_an_he_request_is_a_job_row_through_the_same_states(bank, ckks):
    """Issue 18: an answered request is a released job, a refused one a refused job, each
    move ledgered under the operator; the row holds what was asked, never keys or values."""
    from sandbox.core.store import jobs
    from sandbox.run.jobstate import JobState, job_outcome, list_jobs

    platform, operator, table, _token = bank
    keys = _rows(table, 200)
    body = client_he.build_request(ckks, "registry", "code", ["county"], keys, [3.0] * 200)
    he.he_sum(platform, operator, body)
    private = ckks.serialize(save_secret_key=True)
    with pytest.raises(PolicyRefusal):
        he.he_sum(platform, operator, _body_with_context(private, keys[:20], [1.0] * 20, ctx=ckks))
    with platform.store.read() as conn:
        listed = list_jobs(conn, operator)
        rows = {r.id: r for r in conn.execute(jobs.select())}
        released, refused = (job_outcome(conn, operator, r["id"]) for r in listed)
    assert [r["kind"] for r in listed] == ["he_aggregate", "he_aggregate"]
    assert released.state is JobState.RELEASED and released.product_id is None
    assert refused.state is JobState.REFUSED
    assert refused.reason["rule"] == "he_secret_key_sent"
    asked = json.loads(rows[released.job_id].request_json)
    assert asked == {
        "dataset": "registry",
        "key_column": "code",
        "by": ["county"],
        "scheme": "ckks",
        "list_size": 200,
    }
    assert json.loads(rows[released.job_id].inputs_json)[0]["dataset"] == "registry"
    moves = [e["action"] for e in _ledger_of(platform, f"job:{released.job_id}")]
    assert moves == [
        "job.submitted",
        "job.queued",
        "job.running",
        "job.checking",
        "job.released",
    ]
    assert all(e["actor"] == "bank" for e in _ledger_of(platform, f"job:{released.job_id}"))
    text = json.dumps([dict(r._mapping) for r in rows.values()], default=str)
    assert keys[0] not in text


def _ledger_of(platform, subject):
    from sandbox.core import ledger

    with platform.store.read() as conn:
        return [e for e in ledger.query(conn) if e["subject"] == subject]
