"""The ``sandbox`` command line, run as a real subprocess (``python -m sandbox.cli``).

One platform home per module goes through the whole flow once (init, principals,
dataset, grant, a job from standard input, its product); each test then reads
what one step printed, or runs one more command. Errors must be one line on
standard error with the machine code, and a non-zero exit status.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.conftest import DATA, PUMS_CLASSIFICATION

REPO = Path(__file__).resolve().parents[1]
PUMS_CSV = DATA / "pums_1000_pid.csv"
SQL = "SELECT sex, educ, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex, educ\n"


def _env(tmp: Path) -> dict[str, str]:
    """A clean environment: no SANDBOX_* variable of the test run leaks in."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
    env.update(PYTHONPATH=str(REPO), HOME=str(tmp), PYTHONDONTWRITEBYTECODE="1")
    return env


@dataclass
class Cli:
    home: Path
    tmp: Path
    tokens: dict[str, str] = field(default_factory=dict)
    steps: dict[str, subprocess.CompletedProcess] = field(default_factory=dict)

    def run(
        self,
        *args: str,
        token: str | None = None,
        stdin: str | None = None,
        home: Path | None = None,
    ) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "sandbox.cli", "--home", str(home or self.home), *args]
        if token is not None:
            command += ["--as", self.tokens[token]]
        return subprocess.run(
            command,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            env=_env(self.tmp),
            cwd=self.tmp,
        )

    def step(self, name: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
        result = self.run(*args, **kwargs)
        self.steps[name] = result
        assert result.returncode == 0, (name, result.stdout, result.stderr)
        return result


@pytest.fixture(scope="module")
def cli(tmp_path_factory) -> Cli:
    tmp = tmp_path_factory.mktemp("cli")
    c = Cli(home=tmp / "home", tmp=tmp)
    c.step("init", "init")
    for name, role, extra in [
        ("bureau", "provider", ()),
        ("city", "authority", ("--jurisdiction", "city")),
        ("bank", "operator", ()),
        ("rival", "operator", ()),
        ("audit", "auditor", ()),
    ]:
        result = c.step(f"add {name}", "principal", "add", "--name", name, "--role", role, *extra)
        c.tokens[name] = result.stdout.splitlines()[0].strip()
    classification = tmp / "pums.yaml"
    classification.write_text(yaml.safe_dump(PUMS_CLASSIFICATION))
    c.step(
        "register",
        "dataset",
        "register",
        "pums",
        "--source",
        str(PUMS_CSV),
        "--classification",
        str(classification),
        token="bureau",
    )
    c.step(
        "grant",
        "grant",
        "add",
        "--operator",
        "bank",
        "--dataset",
        "pums",
        "--until",
        "2099-01-01",
        token="city",
    )
    c.step("submit", "job", "submit", "--sql", "-", "--json", token="bank", stdin=SQL)
    return c


def _one_error_line(result: subprocess.CompletedProcess, code: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error [{code}]: "), lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


def test_init_creates_the_home_and_names_the_public_key(cli: Cli):
    out = cli.steps["init"].stdout
    assert "platform home ready" in out and "platform.pub" in out
    assert (cli.home / "store.sqlite").exists()
    assert (cli.home / "keys" / "platform.pub").exists()


def test_principal_add_prints_a_token_once(cli: Cli):
    tokens = list(cli.tokens.values())
    assert len(set(tokens)) == len(tokens) == 5
    assert all(len(t) > 30 and " " not in t for t in tokens)
    assert "shown once" in cli.steps["add bank"].stdout
    listed = cli.run("principal", "list", "--json", token="city")
    assert listed.returncode == 0, listed.stderr
    assert {r["name"] for r in json.loads(listed.stdout)} == set(cli.tokens)
    assert not any(t in listed.stdout for t in tokens)


def test_dataset_register_reads_the_yaml_classification(cli: Cli):
    assert "pums: registered version 1 (1,000 rows" in cli.steps["register"].stdout
    shown = cli.run("dataset", "show", "pums", "--json", token="bureau")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["classification"]["columns"]["pid"] == "identifier"


def test_grant_add_names_operator_and_dataset(cli: Cli):
    assert "bank may use pums until 2099-01-01" in cli.steps["grant"].stdout


def test_job_submit_from_stdin_releases_a_product(cli: Cli):
    outcome = json.loads(cli.steps["submit"].stdout)
    assert outcome["state"] == "released"
    assert outcome["product"] == f"prod-{outcome['job']:06d}"
    assert outcome["report"]["counts"]["threshold"] > 0


def test_job_show_as_the_owner_and_not_as_another_operator(cli: Cli):
    job = json.loads(cli.steps["submit"].stdout)["job"]
    shown = cli.run("job", "show", str(job), token="bank")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"job {job}: released")
    assert "threshold" in shown.stdout and "product: prod-" in shown.stdout
    hidden = cli.run("job", "show", str(job), token="rival")
    assert hidden.returncode == 1
    _one_error_line(hidden, "not_found")


def test_a_refused_job_exits_non_zero_and_names_the_rule(cli: Cli):
    result = cli.run("job", "submit", "--sql", "-", token="bank", stdin="SELECT age FROM pums")
    assert result.returncode == 3
    assert "refused" in result.stdout and "[row_level]" in result.stdout
    assert "Art. 15" in result.stdout


def test_product_list_get_and_verify(cli: Cli):
    product = json.loads(cli.steps["submit"].stdout)["product"]
    listed = cli.run("product", "list", token="bank")
    assert listed.returncode == 0 and product in listed.stdout, listed.stderr
    assert cli.run("product", "list", token="rival").stdout.strip() == "(no products)"
    out = cli.tmp / "downloads"
    got = cli.run("product", "get", product, "--out", str(out), token="bank")
    assert got.returncode == 0, got.stderr
    assert (out / product / "manifest.sig").exists()
    verified = cli.run("product", "verify", str(out / product))
    assert verified.returncode == 0, verified.stderr
    assert f"{product}: signature and 3 file hashes verified" in verified.stdout
    (out / product / "output.csv").write_text("sex,educ,n,total\n1,9,3,100\n")
    broken = cli.run("product", "verify", str(out / product))
    assert broken.returncode == 1
    assert "output.csv" in _one_error_line(broken, "integrity")


def test_ledger_verify_and_show_as_auditor(cli: Cli):
    verified = cli.run("ledger", "verify")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("ledger verified: ")
    shown = cli.run("ledger", "show", "--action", "job.released", "--json", token="audit")
    assert shown.returncode == 0, shown.stderr
    [entry] = json.loads(shown.stdout)
    assert entry["actor"] == "bank" and entry["role"] == "operator"
    denied = cli.run("ledger", "show", token="bank")
    assert denied.returncode == 3
    _one_error_line(denied, "forbidden")


def test_no_token_is_one_error_line_without_traceback(cli: Cli):
    result = cli.run("dataset", "list")
    assert result.returncode != 0
    line = _one_error_line(result, "unauthenticated")
    assert "SANDBOX_TOKEN" in line
    assert result.stdout == ""


def test_debug_shows_the_traceback(cli: Cli):
    result = cli.run("--debug", "dataset", "list")
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "AuthError" in result.stderr


def test_a_bad_classification_exits_with_status_2(cli: Cli, tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("entity_key: pid\ncolumns:\n  pid: identifer\n  sex: dimension\n")
    result = cli.run(
        "dataset",
        "register",
        "pums2",
        "--source",
        str(PUMS_CSV),
        "--classification",
        str(bad),
        token="bureau",
    )
    assert result.returncode == 2
    line = _one_error_line(result, "bad_classification")
    assert "identifer" in line and "did you mean 'identifier'" in line


def test_ledger_verify_names_an_entry_edited_in_the_store(cli: Cli, tmp_path: Path):
    home = tmp_path / "home"
    shutil.copytree(cli.home, home)
    with sqlite3.connect(home / "store.sqlite") as db:
        seq, details = db.execute(
            "SELECT seq, details FROM ledger WHERE action = 'job.released'"
        ).fetchone()
        db.execute(
            "UPDATE ledger SET details = ? WHERE seq = ?",
            (details.replace("released", "withheld"), seq),
        )
    db.close()
    result = cli.run("ledger", "verify", home=home)
    assert result.returncode == 1
    line = _one_error_line(result, "integrity")
    assert f"ledger entry {seq} was edited" in line
    assert cli.run("ledger", "verify").returncode == 0  # the original is untouched
