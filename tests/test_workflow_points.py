"""The regulation's smaller points (issue 20, item 10): state secrets refused at
registration (Art. 2), deadlines in Beijing time (Art. 11), one application per
operator and notice (Art. 11)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from policies.errors import ClassificationError, PolicyRefusal
from sandbox.core.store import datasets
from sandbox.data import vault
from sandbox.registry.base import BEIJING, parse_time
from tests.workflow_helpers import (
    apply,
    cast_fixture,  # noqa: F401  (the fixture cast)
    publish,
)


@pytest.mark.parametrize(
    "change",
    ["secret: true\n", "columns: {pid: identifier, income: Secret}\n"],
    ids=["dataset flag", "column class"],
)
def test_state_secrets_are_refused_at_registration(platform, provider, tmp_path, change):
    """The provider's classification file is read as ``dataset register`` reads it."""
    source = tmp_path / "small.csv"
    source.write_text("pid,income\nP1,10\nP2,20\n", encoding="utf-8")
    path = tmp_path / "small.yaml"
    base = "entity_key: pid\n"
    path.write_text(base + "columns: {pid: identifier, income: measure}\n", encoding="utf-8")
    vault.load_classification(path)  # the file without the secret loads
    lines = base + (
        change
        if change.startswith("columns")
        else "columns: {pid: identifier, income: measure}\n" + change
    )
    path.write_text(lines, encoding="utf-8")
    with pytest.raises(ClassificationError, match=r"state secrets .*\(Art\. 2\)") as info:
        vault.register(platform, provider, "secrets", str(source), vault.load_classification(path))
    assert info.value.code == "state_secret" and info.value.article == "Art. 2"
    with platform.store.read() as conn:
        assert conn.execute(select(func.count()).select_from(datasets)).scalar_one() == 0


def test_a_bare_date_deadline_closes_at_the_end_of_that_day_in_beijing(cast):
    day = (datetime.now(BEIJING) + timedelta(days=3)).date()
    nid = publish(cast, deadline=day.isoformat())
    closes = datetime(day.year, day.month, day.day, tzinfo=BEIJING) + timedelta(days=1)
    assert closes.astimezone(UTC).hour == 16  # 00:00 in Beijing is 16:00 UTC the day before
    assert parse_time(day.isoformat(), end=True) == closes
    apply(cast, nid, operator=cast.rival, now=closes - timedelta(seconds=1))
    with pytest.raises(PolicyRefusal) as info:
        apply(cast, nid, now=closes)
    assert (info.value.rule, info.value.article) == ("application_late", "Art. 11")


def test_one_application_per_operator_and_notice(cast):
    nid = publish(cast)
    first = apply(cast, nid)
    with pytest.raises(PolicyRefusal) as info:
        apply(cast, nid, scenario="the same, again")
    assert (info.value.rule, info.value.article) == ("duplicate_application", "Art. 11")
    assert f"application {first}" in info.value.message
    apply(cast, nid, operator=cast.rival)  # another operator may
