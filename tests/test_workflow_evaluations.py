"""Operators submit evaluation materials, evaluations name what they considered (Art. 23;
issue 20, item 2): a material is kept under the home with its SHA-256, ledgered, limited
in kind and size, read by its operator, the authorities covering the agreement and
auditors only; an evaluation records the materials it read and its score, shown
afterwards to the same readers."""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta

import pytest
from click.testing import CliRunner

from policies.errors import (
    InputError,
    IntegrityError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    PolicyRefusal,
)
from sandbox.cli.app import main
from sandbox.core import ledger
from sandbox.registry.tables import evaluation_materials, evaluations
from sandbox.workflow import evaluations as ev_mod
from sandbox.workflow import scheduler, supervision
from tests.workflow_helpers import (
    COUNTY,
    NOW,
    cast_fixture,  # noqa: F401  (the fixture cast)
    entries,
    granted,
)

REPORT = b"Self-assessment 2026\nstaff trained: 12\ndrills: 2\n"


def submit(cast, agreement_id, content=REPORT, filename="self-assessment.txt", who=None,
           title="self-assessment 2026"):  # fmt: skip
    return ev_mod.submit(cast.platform, who or cast.operator, agreement_id, title=title,
                         filename=filename, content=content)  # fmt: skip


def written(cast) -> tuple:
    """The ledger's length, the materials' and evaluations' rows, the files kept."""
    folder = cast.platform.home / ev_mod.FOLDER
    with cast.platform.store.read() as conn:
        return (
            ledger.count(conn),
            len(conn.execute(evaluation_materials.select()).all()),
            len(conn.execute(evaluations.select()).all()),
            sorted(p.name for p in folder.iterdir()) if folder.exists() else [],
        )


def test_a_material_is_kept_with_its_sha256_and_ledgered(cast):
    agreement_id, _ = granted(cast)
    done = submit(cast, agreement_id)
    digest = hashlib.sha256(REPORT).hexdigest()
    assert (done["agreement"], done["operator"], done["filename"]) == (
        agreement_id,
        "operator",
        "self-assessment.txt",
    )
    assert (done["sha256"], done["bytes"], done["considered_by"]) == (digest, len(REPORT), [])
    kept = cast.platform.home / "materials" / digest
    assert kept.read_bytes() == REPORT
    [entry] = entries(cast.platform, f"material:{done['id']}")
    assert (entry["action"], entry["actor"], entry["article"]) == (
        "material.submitted",
        "operator",
        "Art. 23",
    )
    assert entry["details"]["sha256"] == digest and entry["details"]["agreement"] == agreement_id
    again = submit(cast, agreement_id, filename="copy.txt", title="the same, again")
    assert again["id"] != done["id"] and again["sha256"] == digest
    assert [p.name for p in kept.parent.iterdir()] == [digest]  # the same bytes kept once
    info, path = ev_mod.material_file(cast.platform, cast.operator, again["id"])
    assert path.read_bytes() == REPORT and info["filename"] == "copy.txt"


def test_who_reads_the_materials(cast):
    city_agreement, _ = granted(cast)
    county_agreement, _ = granted(cast, authority=cast.county, notice_kw={"jurisdiction": COUNTY})
    city_material = submit(cast, city_agreement)["id"]
    county_material = submit(cast, county_agreement, content=b"county report")["id"]
    for who in (cast.operator, cast.city, cast.auditor):
        assert [m["id"] for m in ev_mod.materials_of(cast.platform, who, city_agreement)] == [
            city_material
        ]
        assert ev_mod.material_file(cast.platform, who, city_material)[0]["id"] == city_material
    for who in (cast.county, cast.city):  # the county's own, and the city over its counties
        assert ev_mod.material_file(cast.platform, who, county_material)[1].read_bytes() == (
            b"county report"
        )
    for who, agreement_id, material in [
        (cast.county, city_agreement, city_material),  # a county authority, a city agreement
        (cast.other_county, county_agreement, county_material),  # another county's
    ]:
        with pytest.raises(PermissionDenied) as info:
            ev_mod.materials_of(cast.platform, who, agreement_id)
        assert info.value.code == "outside_jurisdiction"
        with pytest.raises(PermissionDenied) as info:
            ev_mod.material_file(cast.platform, who, material)
        assert info.value.code == "outside_jurisdiction"
    for who in (cast.consumer, cast.provider, cast.r1):  # roles that read no materials
        with pytest.raises(PermissionDenied, match="Art. 23"):
            ev_mod.materials_of(cast.platform, who, city_agreement)
        with pytest.raises(PermissionDenied, match="Art. 23"):
            ev_mod.material_file(cast.platform, who, city_material)
    with pytest.raises(NotFound):  # another operator is told there is none
        ev_mod.materials_of(cast.platform, cast.rival, city_agreement)
    with pytest.raises(NotFound):
        ev_mod.material_file(cast.platform, cast.rival, city_material)


def test_bad_materials_are_refused_and_nothing_is_kept(cast, monkeypatch):
    agreement_id, _ = granted(cast)
    ended, _ = granted(cast, until=NOW + timedelta(days=2))
    scheduler.tick(cast.platform, now=NOW + timedelta(days=3))  # the second one expires
    before = written(cast)
    monkeypatch.setattr(ev_mod, "MAX_BYTES", 1000)
    bad = [
        (dict(filename="report.exe"), InputError, "must end|ends in one of"),
        (dict(filename="no-suffix"), InputError, "ends in one of"),
        (dict(content=b""), InputError, "is empty"),
        (dict(content=b"x" * 1001), PayloadTooLarge, "over the limit"),
        (dict(title="  "), InputError, "'title' is required"),
        (dict(title="t" * 201), InputError, "over 200 characters"),
        (dict(who=cast.rival), NotFound, "no agreement"),
        (dict(who=cast.city), PermissionDenied, "Art. 23"),
    ]
    for change, error, message in bad:
        with pytest.raises(error, match=message):
            submit(cast, agreement_id, **change)
    with pytest.raises(PolicyRefusal) as info:
        submit(cast, ended)
    assert info.value.rule == "agreement_ended" and info.value.article == "Art. 23"
    with pytest.raises(NotFound):
        submit(cast, 999)
    assert written(cast) == before
    exactly = submit(cast, agreement_id, content=b"y" * 1000)  # at the limit: kept
    assert exactly["bytes"] == 1000


def test_a_material_whose_file_changed_is_refused(cast):
    agreement_id, _ = granted(cast)
    material = submit(cast, agreement_id)
    (cast.platform.home / "materials" / material["sha256"]).write_bytes(b"rewritten")
    with pytest.raises(IntegrityError, match="does not match"):
        ev_mod.material_file(cast.platform, cast.city, material["id"])


def test_an_evaluation_records_what_it_considered(cast):
    agreement_id, _ = granted(cast)
    other, _ = granted(cast)
    read = submit(cast, agreement_id)["id"]
    unread = submit(cast, agreement_id, content=b"security report", title="security")["id"]
    elsewhere = submit(cast, other, content=b"other")["id"]
    eid = supervision.evaluate(cast.platform, cast.city, agreement_id, passed=True,
                               notes="trainings kept", materials=[read, read], score=82)  # fmt: skip
    shown = ev_mod.evaluation_dict(cast.platform, cast.operator, eid)
    assert (shown["status"], shown["notes"], shown["score"]) == ("passed", "trainings kept", 82)
    assert [m["id"] for m in shown["materials"]] == [read] and shown["authority"] == "city"
    assert shown["figures"]["operator"] == "operator" and shown["figures"]["totals"]["jobs"] == 0
    listed = {m["id"]: m["considered_by"] for m in
              ev_mod.materials_of(cast.platform, cast.auditor, agreement_id)}  # fmt: skip
    assert listed == {read: [eid], unread: []}
    [entry] = [e for e in entries(cast.platform, f"evaluation:{eid}")]
    assert entry["details"]["materials"] == [read] and entry["details"]["score"] == 82
    before = written(cast)
    with pytest.raises(PolicyRefusal) as info:  # a material of another agreement
        supervision.evaluate(cast.platform, cast.city, agreement_id, passed=False, notes="n",
                             deadline=NOW + timedelta(days=30), materials=[elsewhere])  # fmt: skip
    assert info.value.rule == "material_not_submitted" and f"--material {elsewhere}" in str(
        info.value
    )
    for score in (101, -1):
        with pytest.raises(InputError, match="--score"):
            supervision.evaluate(cast.platform, cast.city, agreement_id, passed=True, notes="n",
                                 score=score)  # fmt: skip
    assert written(cast) == before  # nothing written, and the agreement is not suspended
    plain = supervision.evaluate(cast.platform, cast.city, agreement_id, passed=True, notes="n")
    assert ev_mod.evaluation_dict(cast.platform, cast.city, plain)["score"] is None


def test_who_reads_an_evaluation(cast):
    agreement_id, _ = granted(cast)
    eid = supervision.evaluate(cast.platform, cast.city, agreement_id, passed=True, notes="ok")
    for who in (cast.operator, cast.city, cast.auditor):
        assert ev_mod.evaluation_dict(cast.platform, who, eid)["id"] == eid
    with pytest.raises(NotFound):
        ev_mod.evaluation_dict(cast.platform, cast.rival, eid)
    with pytest.raises(PermissionDenied) as info:
        ev_mod.evaluation_dict(cast.platform, cast.county, eid)
    assert info.value.code == "outside_jurisdiction"
    for who in (cast.consumer, cast.provider):
        with pytest.raises(PermissionDenied, match="Art. 23"):
            ev_mod.evaluation_dict(cast.platform, who, eid)
    with pytest.raises(NotFound):
        ev_mod.evaluation_dict(cast.platform, cast.city, 999)


def test_the_command_line_submits_lists_downloads_and_shows(cast, tmp_path):
    agreement_id, _ = granted(cast)
    runner = CliRunner()
    home = ["--home", str(cast.platform.home)]

    def run(who, *args):
        done = runner.invoke(main, [*home, *args, "--as", cast.tokens[who], "--json"])
        assert done.exit_code == 0, done.output
        return json.loads(done.output)

    source = tmp_path / "drill-minutes.md"
    source.write_bytes(REPORT)
    material = run("operator", "evaluation", "submit", str(agreement_id), "--file", str(source),
                   "--title", "drill minutes")  # fmt: skip
    assert material["sha256"] == hashlib.sha256(REPORT).hexdigest()
    assert [m["title"] for m in run("auditor", "evaluation", "materials", str(agreement_id))] == [
        "drill minutes"
    ]
    saved = run("city", "evaluation", "download", str(material["id"]), "--out", str(tmp_path / "o"))
    assert saved["path"] == str(tmp_path / "o" / "drill-minutes.md")
    assert (tmp_path / "o" / "drill-minutes.md").read_bytes() == REPORT
    again = runner.invoke(main, [*home, "evaluation", "download", str(material["id"]), "--out",
                                 str(tmp_path / "o"), "--as", cast.tokens["city"]])  # fmt: skip
    assert again.exit_code != 0 and "exists already" in again.output
    eid = run("city", "evaluate", "--agreement", str(agreement_id), "--result", "pass", "--notes",
              "drills held", "--material", str(material["id"]), "--score", "90")["evaluation"]  # fmt: skip
    shown = run("operator", "evaluation", "show", str(eid))
    assert (shown["score"], shown["notes"]) == (90, "drills held")
    assert [m["id"] for m in shown["materials"]] == [material["id"]]
    big = tmp_path / "huge.pdf"
    with open(big, "wb") as fh:
        fh.truncate(ev_mod.MAX_BYTES + 1)  # sparse: checked by its size, never read
    refused = runner.invoke(main, [*home, "evaluation", "submit", str(agreement_id), "--file",
                                   str(big), "--title", "t", "--as", cast.tokens["operator"]])  # fmt: skip
    assert refused.exit_code != 0 and "over the limit of 20 MiB" in refused.output


def test_a_submission_that_fails_after_its_file_was_placed_keeps_nothing(cast, monkeypatch):
    agreement_id, _ = granted(cast)
    before = written(cast)
    record = cast.platform.record

    def failing(conn, actor, action, *args, **kw):
        if action == "material.submitted":
            raise RuntimeError("the store went away")
        return record(conn, actor, action, *args, **kw)

    monkeypatch.setattr(cast.platform, "record", failing)
    with pytest.raises(RuntimeError):
        submit(cast, agreement_id)
    assert written(cast) == before  # no row, no entry, and the placed file removed
