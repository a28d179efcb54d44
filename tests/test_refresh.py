"""Refresh: a registered source pulled again on demand or by its daily schedule (run with an
injected clock), against a real DuckDB database file; every pull ledgered, a failed pull
keeps the last version."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from zoneinfo import ZoneInfo

import duckdb
import pytest

from policies.classes import Classification
from policies.errors import InputError, PermissionDenied, SourceError
from sandbox.core import ledger
from sandbox.core.principals import Role, Status, set_status
from sandbox.data import vault
from sandbox.data.kept_sources import kept_uri
from sandbox.data.refresh import list_sources, refresh, run_due, set_schedule
from sandbox.registry.inbox import inbox_of

CLASSES = Classification.from_dict(
    {"entity_key": "pid", "columns": {"pid": "identifier", "county": "dimension", "n": "measure"}}
)
SHANGHAI = ZoneInfo("Asia/Shanghai")


def write_db(path, rows: int, table: str = "payments") -> None:
    with duckdb.connect(str(path)) as con:
        con.execute(f"DROP TABLE IF EXISTS {table}")
        con.execute(
            f"CREATE TABLE {table} AS SELECT 'P' || i AS pid, 'c' || (i % 3) AS county, i AS n "
            f"FROM range({rows}) t(i) ORDER BY i"
        )


@pytest.fixture
def registered(platform, provider, tmp_path):
    db = tmp_path / "bureau.duckdb"
    write_db(db, 90)
    uri = f"duckdb://{db}?query=SELECT * FROM payments ORDER BY n"
    vault.register(platform, provider, "payments", uri, CLASSES)
    return db


def actions(platform, action):
    with platform.store.read() as conn:
        return ledger.query(conn, action=action)


def latest(platform):
    with platform.store.read() as conn:
        return vault.get_version(conn, platform, "payments")


def test_unchanged_data_keeps_the_version_and_changed_data_makes_the_next(
    platform, provider, registered
):
    pulled = refresh(platform, provider, "payments")
    assert pulled["version"] == 1 and pulled["changed"] is False
    write_db(registered, 120)
    pulled = refresh(platform, provider, "payments")
    assert pulled["version"] == 2 and pulled["changed"] is True and pulled["rows"] == 120
    entries = actions(platform, "dataset.refresh")
    assert [(e["details"]["status"], e["details"]["version"]) for e in entries] == [
        ("unchanged", 1),
        ("changed", 2),
    ]
    (source,) = list_sources(platform, provider)
    assert source["last_status"] == "changed" and source["last_error"] is None


def test_a_failed_pull_keeps_the_last_version_and_tells_the_provider(
    platform, provider, registered
):
    with duckdb.connect(str(registered)) as con:
        con.execute("ALTER TABLE payments RENAME TO payments_old")
    with pytest.raises(SourceError) as err:
        refresh(platform, provider, "payments")
    assert "refresh of 'payments' failed, version 1 stays" in err.value.message
    assert latest(platform).version == 1
    (failed,) = actions(platform, "dataset.refresh_failed")
    assert failed["details"]["version"] == 1 and "payments" in failed["details"]["error"]
    (source,) = list_sources(platform, provider)
    assert source["last_status"] == "failed" and "cannot run" in source["last_error"]


def test_only_the_datasets_provider_refreshes_and_an_upload_has_no_source(
    platform, provider, make_principal, registered, tmp_path
):
    other = make_principal("water_utility", Role.PROVIDER)[0]
    with pytest.raises(PermissionDenied):
        refresh(platform, other, "payments")
    operator = make_principal("bank", Role.OPERATOR)[0]
    with pytest.raises(PermissionDenied):
        refresh(platform, operator, "payments")
    # A registration from a file in the platform's work folder (an upload) forgets the source.
    work = platform.work_dir()
    upload = work / "upload.csv"
    upload.write_text("pid,county,n\nP1,c1,1\n")
    vault.register(platform, provider, "payments", str(upload), CLASSES)
    with pytest.raises(InputError) as err:
        refresh(platform, provider, "payments")
    assert "uploaded" in err.value.message
    assert kept_uri(platform, "payments") is None and list_sources(platform, provider) == []


def test_a_schedule_fires_once_a_day_at_its_time_in_shanghai(platform, provider, registered):
    assert set_schedule(platform, provider, "payments", "02:30")["timezone"] == "Asia/Shanghai"
    day = dt.datetime(2026, 3, 1, 2, 29, tzinfo=SHANGHAI)
    assert run_due(platform, day) == []  # one minute early
    write_db(registered, 150)
    # 02:30 in Shanghai is 18:30 UTC the day before: the clock's own zone does not matter.
    at = dt.datetime(2026, 2, 28, 18, 30, tzinfo=dt.UTC)
    (pulled,) = run_due(platform, at)
    assert pulled["trigger"] == "schedule" and pulled["version"] == 2 and pulled["changed"]
    assert run_due(platform, day.replace(hour=23)) == []  # once that day
    (again,) = run_due(platform, day + dt.timedelta(days=1, minutes=5))
    assert again["version"] == 2 and again["changed"] is False
    triggers = [e["details"]["trigger"] for e in actions(platform, "dataset.refresh")]
    assert triggers == ["schedule", "schedule"]


def test_a_failed_scheduled_pull_is_tried_again_the_next_day(platform, provider, registered):
    set_schedule(platform, provider, "payments", "06:00")
    registered.unlink()
    day = dt.datetime(2026, 3, 1, 7, 0, tzinfo=SHANGHAI)
    (failed,) = run_due(platform, day)
    assert "does not exist" in failed["error"] and latest(platform).version == 1
    page = inbox_of(platform, provider, kind="source.refresh_failed")
    assert page["total"] == 1 and "does not exist" in page["items"][0]["body"]["error"]
    assert run_due(platform, day + dt.timedelta(hours=1)) == []
    write_db(registered, 30)
    (pulled,) = run_due(platform, day + dt.timedelta(days=1))
    assert pulled["version"] == 2


def test_a_deactivated_providers_schedule_is_skipped(platform, provider, registered):
    set_schedule(platform, provider, "payments", "00:00")
    set_status(platform, None, provider.name, Status.DEACTIVATED, "left the bureau")
    (skipped,) = run_due(platform, dt.datetime(2026, 3, 1, 1, 0, tzinfo=SHANGHAI))
    assert "deactivated" in skipped["error"]
    assert len(actions(platform, "dataset.refresh_skipped")) == 1


def test_schedule_input_is_checked(platform, provider, registered):
    for bad in ("25:00", "2:30", "noon"):
        with pytest.raises(InputError) as err:
            set_schedule(platform, provider, "payments", bad)
        assert "HH:MM" in err.value.message
    set_schedule(platform, provider, "payments", "08:15")
    assert set_schedule(platform, provider, "payments", None)["daily_at"] is None
    assert run_due(platform, dt.datetime(2026, 3, 1, 23, 0, tzinfo=SHANGHAI)) == []
    with pytest.raises(ValueError):
        run_due(platform, dt.datetime(2026, 3, 1, 23, 0))


def test_the_password_stays_in_the_kept_file(platform, provider, registered):
    uri = kept_uri(platform, "payments")
    path = platform.home / "keys" / "sources" / "payments.uri"
    assert path.read_text() == uri and path.stat().st_mode & 0o777 == 0o600
    with platform.store.read() as conn:
        entries = ledger.query(conn, action="dataset.register")
    assert "duckdb://" in json.dumps(entries)


def test_a_relative_path_is_kept_absolute(platform, provider, tmp_path, monkeypatch):
    from sandbox.data.kept_sources import absolute

    monkeypatch.chdir(tmp_path)
    write_db(tmp_path / "rel.duckdb", 10)
    vault.register(platform, provider, "rel", "duckdb://rel.duckdb?table=payments", CLASSES)
    assert kept_uri(platform, "rel") == f"duckdb://{tmp_path / 'rel.duckdb'}?table=payments"
    assert absolute("data/x.xlsx?sheet=a") == f"{tmp_path / 'data/x.xlsx'}?sheet=a"
    assert absolute("mysql://u:p@h/db?table=t") == "mysql://u:p@h/db?table=t"
    monkeypatch.chdir(tmp_path.parent)  # the server's own folder: the same file is read
    assert refresh(platform, provider, "rel")["changed"] is False


def test_the_commands_on_the_host(platform, make_principal, tmp_path):
    import os
    import subprocess
    import sys

    provider, token = make_principal("water_bureau", Role.PROVIDER)
    write_db(tmp_path / "w.duckdb", 20)
    vault.register(platform, provider, "water", f"duckdb://{tmp_path / 'w.duckdb'}?table=payments",
                   CLASSES)  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("SANDBOX_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])

    def cli(*args):
        return subprocess.run(
            [sys.executable, "-m", "sandbox", "--home", str(platform.home), *args, "--as", token],
            env=env, capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    done = cli("dataset", "refresh", "water", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["changed"] is False
    done = cli("dataset", "schedule", "water", "--daily", "07:00")
    assert done.returncode == 0 and "every day at 07:00 (Asia/Shanghai)" in done.stdout
    done = cli("dataset", "sources", "--json")
    assert json.loads(done.stdout)[0]["daily_at"] == "07:00"
    done = cli("dataset", "schedule", "water")
    assert done.returncode == 2 and "--daily HH:MM or --off" in done.stderr
    done = cli("dataset", "refresh", "nope")
    assert done.returncode == 1 and "no dataset named 'nope'" in done.stderr


def test_a_refusal_does_not_tell_another_provider_whether_a_dataset_has_a_source(
    platform, provider, make_principal, registered
):
    """Ownership is checked before the source is looked at: another provider asking to
    pull or schedule a dataset with a kept source and one without (an upload) gets the
    same refusal, and nothing is written."""
    from policies.errors import SandboxError

    work = platform.work_dir()
    (work / "upload.csv").write_text("pid,county,n\nP1,c1,1\n")
    vault.register(platform, provider, "uploaded", str(work / "upload.csv"), CLASSES)
    other = make_principal("water_utility", Role.PROVIDER)[0]
    calls = {
        "refresh": lambda name: refresh(platform, other, name),
        "schedule": lambda name: set_schedule(platform, other, name, "03:00"),
        "unschedule": lambda name: set_schedule(platform, other, name, None),
    }
    for what, call in calls.items():
        refusals = []
        for name in ("payments", "uploaded"):
            with pytest.raises(SandboxError) as err:
                call(name)
            refusals.append((type(err.value), err.value.message.replace(name, "NAME")))
        assert refusals[0] == refusals[1], what
        assert refusals[0][0] is PermissionDenied and "another provider" in refusals[0][1]
    assert list_sources(platform, other) == []
    with platform.store.read() as conn:
        written = [e["action"] for e in ledger.query(conn) if e["action"].startswith("dataset.")]
    assert written == ["dataset.register", "dataset.register"]  # the owner's two only
    (kept,) = list_sources(platform, provider)
    assert kept["daily_at"] is None and kept["last_status"] is None
