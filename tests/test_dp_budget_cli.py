"""``sandbox dp``: the population budgets on the command line, run as real subprocesses.

The agreements are made in-process through the real workflow (:func:`world`); every
command after that is a fresh ``python -m sandbox`` process on the same home, so each
one also shows that the balance survives a restart.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.test_cli import REPO, _env
from tests.test_dp_budget_jobs import COUNT, YEAR, World, world

ACCOUNTING = "pure epsilon-DP, basic composition, delta 0"


@pytest.fixture
def w(platform, make_principal, provider) -> World:
    return world(platform, make_principal, provider)


def sandbox(w: World, tmp_path, *args: str, who: str | None = None, stdin: str | None = None):
    command = [sys.executable, "-m", "sandbox", "--home", str(w.platform.home), *args]
    if who is not None:
        command += ["--as", w.cast.tokens[who]]
    return subprocess.run(
        command,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(tmp_path),
        cwd=REPO,
    )


def one_error(result, code: str, exit_status: int, *words: str) -> str:
    assert result.returncode == exit_status, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error [{code}]: "), result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def test_the_authority_sets_and_shares_operators_see_their_own_and_spends_persist(w, tmp_path):
    year = str(YEAR)
    done = sandbox(
        w, tmp_path, "dp", "budget", "set", "--population", "person", "--year", year,
        "--epsilon", "1", who="city",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"person {year}: epsilon 1" in done.stdout and ACCOUNTING in done.stdout
    share_a = sandbox(
        w, tmp_path, "dp", "share", "--agreement", str(w.a), "--epsilon", "0.5",
        "--year", year, "--json", who="city",
    )  # fmt: skip
    assert json.loads(share_a.stdout)["epsilon"] == 0.5, share_a.stderr

    # the shares never exceed the year's total: refused, naming rule, field and article
    over = sandbox(
        w, tmp_path, "dp", "share", "--agreement", str(w.b), "--epsilon", "0.6", "--year", year,
        who="city",
    )  # fmt: skip
    one_error(
        over,
        "refused",
        3,
        "epsilon:",
        "never exceed the year's total",
        "(Art. 15)",
        "(rule dp_shares_over_total)",
    )
    for args, code, status, words in (
        (("--agreement", str(w.b), "--epsilon", "-1", "--year", year), "bad_input", 2, "epsilon:"),
        (("--agreement", "999", "--epsilon", "0.1", "--year", year), "not_found", 1, "agreement:"),
        (("--agreement", str(w.b), "--epsilon", "0.1", "--year", "1850"), "bad_input", 2, "year:"),
    ):
        one_error(
            sandbox(w, tmp_path, "dp", "share", *args, who="city"), code, status, words, "Art. 15"
        )
    one_error(
        sandbox(w, tmp_path, "dp", "budget", "set", "--year", year, "--epsilon", "9", who="rival"),
        "forbidden",
        3,
        "only an authority",
    )
    share_b = sandbox(
        w, tmp_path, "dp", "share", "--agreement", str(w.b), "--epsilon", "0.5", "--year", year,
        who="city",
    )  # fmt: skip
    assert share_b.returncode == 0 and ACCOUNTING in share_b.stdout, share_b.stderr

    sql = COUNT.format(table="pums")
    first = sandbox(w, tmp_path, "job", "submit", "--sql", "-", "--json", who="operator", stdin=sql)
    assert first.returncode == 0, (first.stdout, first.stderr)
    job = json.loads(first.stdout)
    second = sandbox(
        w, tmp_path, "job", "submit", "--sql", "-", "--json", who="operator", stdin=sql
    )
    assert second.returncode == 3, (second.stdout, second.stderr)
    refused = json.loads(second.stdout)
    assert refused["reason"]["rule"] == "dp_budget_exhausted"
    assert "has 0 of its share of 0.5 left" in refused["reason"]["message"]

    spent = json.loads(sandbox(w, tmp_path, "dp", "spent", "--json", who="city").stdout)
    assert spent["accounting"] == ACCOUNTING and spent["total"] == 0.5
    assert spent["agreements"] == [
        {"agreement": w.a, "population": "person", "year": YEAR, "spent": 0.5, "jobs": [job["job"]]}
    ]
    text = sandbox(w, tmp_path, "dp", "spent", who="auditor").stdout
    assert "total: 0.5" in text and ACCOUNTING in text
    rivals = json.loads(sandbox(w, tmp_path, "dp", "shares", "--json", who="rival").stdout)
    assert [s["agreement"] for s in rivals["shares"]] == [w.b]  # its own agreement only
    assert json.loads(sandbox(w, tmp_path, "dp", "spent", "--json", who="rival").stdout) == {
        "accounting": ACCOUNTING,
        "agreements": [],
        "total": 0.0,
    }
    one_error(
        sandbox(w, tmp_path, "dp", "spent", "--agreement", str(w.a), who="rival"),
        "not_found",
        1,
        "agreement:",
    )
    shown = json.loads(sandbox(w, tmp_path, "dp", "budget", "show", "--json", who="auditor").stdout)
    assert [(b["epsilon"], b["shared"], b["spent"]) for b in shown["budgets"]] == [(1.0, 1.0, 0.5)]
    one_error(sandbox(w, tmp_path, "dp", "budget", "show", who="operator"), "forbidden", 3)
