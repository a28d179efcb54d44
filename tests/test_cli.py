"""The ``sandbox`` command line, run as a real subprocess (``python -m sandbox``).

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

from tests.conftest import DATA, HOLDS_OFF, PUMS_CLASSIFICATION

REPO = Path(__file__).resolve().parents[1]
PUMS_CSV = DATA / "pums_1000_pid.csv"
SQL = "SELECT sex, educ, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex, educ\n"


def _env(tmp: Path) -> dict[str, str]:
    """A clean environment: no SANDBOX_* variable of the test run leaks in."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "TZ")}
    env.update(HOLDS_OFF)  # the review holds of table mode: see tests/conftest.py
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
        command = [sys.executable, "-m", "sandbox", "--home", str(home or self.home), *args]
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
    # The operator is told which cells are suppressed, never why (issue 17).
    assert outcome["report"]["counts"]["suppressed"] > 0 and outcome["report"]["suppressed_cells"]
    assert "threshold" not in json.dumps(outcome["report"]["summary"])


def test_job_show_as_the_owner_and_not_as_another_operator(cli: Cli):
    job = json.loads(cli.steps["submit"].stdout)["job"]
    shown = cli.run("job", "show", str(job), token="bank")
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith(f"job {job}: released")
    assert "suppressed" in shown.stdout and "product: prod-" in shown.stdout
    assert "threshold" not in shown.stdout
    audited = cli.run("job", "show", str(job), token="audit")  # the auditor reads why
    assert audited.returncode == 0 and "threshold" in audited.stdout, audited.stderr
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
    assert f"{product}: signature and 7 file hashes verified" in verified.stdout
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


# --- conventions: version, help, exit codes, token files, --json, tables ----------------


def test_version_and_short_help(cli: Cli):
    version = cli.run("--version")
    assert version.returncode == 0 and version.stdout.startswith("sandbox, version "), version
    short = cli.run("-h")
    assert short.returncode == 0 and "Usage: sandbox" in short.stdout
    assert "Exit codes: 0 done; 1 error; 2 usage" in " ".join(short.stdout.split())
    assert cli.run("job", "-h").stdout.startswith("Usage: sandbox job")


def test_the_missing_home_hint_is_a_command_that_works(cli: Cli):
    missing = cli.tmp / "no-home-yet"
    result = cli.run("ledger", "verify", home=missing)
    assert result.returncode == 2
    line = _one_error_line(result, "config_error")
    hint = line.split("run '", 1)[1].rsplit("'", 1)[0]
    assert hint == f"sandbox --home {missing} init"
    args = hint.split()[1:]
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(cli.tmp),
    )
    assert done.returncode == 0, done.stderr
    assert cli.run("ledger", "verify", home=missing).returncode == 0


def test_exit_codes_name_the_kind_of_outcome(cli: Cli):
    assert cli.run("job", "list", "--no-such-option", token="bank").returncode == 2
    assert cli.run("ledger", "show", "--limit", "0", token="audit").returncode == 2
    bad_input = cli.run("grant", "add", "--operator", "bank", "--dataset", "pums",
                        "--until", "soon", token="city")  # fmt: skip
    assert bad_input.returncode == 2
    _one_error_line(bad_input, "bad_input")
    refused = cli.run("job", "submit", "--sql", "-", token="bank", stdin="SELECT age FROM pums")
    assert refused.returncode == 3
    forbidden = cli.run("grant", "add", "--operator", "bank", "--dataset", "pums",
                        "--until", "2099-01-01", token="bank")  # fmt: skip
    assert forbidden.returncode == 3
    _one_error_line(forbidden, "forbidden")
    missing = cli.run("job", "show", "9999", token="bank")
    assert missing.returncode == 1
    _one_error_line(missing, "not_found")


def test_a_direct_grant_is_host_only_and_ledgered_as_direct(cli: Cli):
    """Art. 13, 14: ``grant add`` skips the workflow, so it never runs through --server,
    and its ledger entry says it was a direct grant (no agreement)."""
    args = ("grant", "add", "--operator", "bank", "--dataset", "pums", "--until", "2099-01-01")
    remote = cli.run("--server", "http://127.0.0.1:9", *args, token="city")
    assert remote.returncode == 2
    assert "runs on the platform's host only" in _one_error_line(remote, "bad_input")
    done = cli.run(*args, "--json", token="city")
    assert done.returncode == 0, done.stderr
    grant = json.loads(done.stdout)["grant"]
    entries = json.loads(
        cli.run("ledger", "show", "--subject", f"grant:{grant}", "--json", token="audit").stdout
    )
    assert [e["action"] for e in entries] == ["grant.direct"]
    assert entries[0]["details"]["direct"] is True and entries[0]["details"]["agreement"] is None


def test_ledger_show_refuses_malformed_times(cli: Cli):
    for flag in ("--since", "--until"):
        result = cli.run("ledger", "show", flag, "yesterday", token="audit")
        assert result.returncode == 2 and result.stdout == ""
        line = _one_error_line(result, "bad_input")
        assert f"{flag[2:]} 'yesterday' is not an ISO date or time" in line
    everything = json.loads(cli.run("ledger", "show", "--json", token="audit").stdout)
    today = everything[-1]["ts"][:10]
    until_today = cli.run("ledger", "show", "--until", today, "--json", token="audit")
    assert json.loads(until_today.stdout) == everything  # a date takes in the whole day
    tomorrow = cli.run("ledger", "show", "--since", "2999-01-01", token="audit")
    assert tomorrow.returncode == 0 and tomorrow.stdout.strip() == "(no entries)"


def test_the_token_can_come_from_a_file_only_its_owner_reads(cli: Cli):
    path = cli.tmp / "bank.token"
    path.write_text(cli.tokens["bank"] + "\n")
    path.chmod(0o644)
    env = {**_env(cli.tmp), "SANDBOX_TOKEN_FILE": str(path)}
    command = [sys.executable, "-m", "sandbox", "--home", str(cli.home), "job", "list"]
    loose = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert loose.returncode == 2
    line = _one_error_line(loose, "bad_input")
    assert "mode 0644" in line and f"chmod 600 {path}" in line
    assert cli.tokens["bank"] not in loose.stderr
    path.chmod(0o600)
    tight = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert tight.returncode == 0, tight.stderr
    assert "released" in tight.stdout
    # --as still wins over the file: the rival sees none of the bank's jobs
    rival = subprocess.run([*command, "--as", cli.tokens["rival"]], capture_output=True,
                           text=True, env=env, timeout=120)  # fmt: skip
    assert rival.returncode == 0 and rival.stdout.strip() == "(no jobs)"


def test_every_command_that_prints_data_has_json():
    import click

    from sandbox.cli.app import main

    # Commands that print only a line of progress or start something long-running.
    without = {"init", "serve", "demo", "demo-data", "demo-loans"}

    def walk(group: click.Group, prefix: str):
        for name, command in group.commands.items():
            if isinstance(command, click.Group):
                yield from walk(command, f"{prefix}{name} ")
            else:
                yield f"{prefix}{name}", command

    missing = [
        path
        for path, command in walk(main, "")
        if path not in without and not any(p.name == "as_json" for p in command.params)
    ]
    assert missing == []


def test_json_of_product_get_verify_and_ledger_head_verify(cli: Cli):
    product = json.loads(cli.steps["submit"].stdout)["product"]
    out = cli.tmp / "json-downloads"
    got = json.loads(cli.run("product", "get", product, "--out", str(out), "--json",
                             token="bank").stdout)  # fmt: skip
    assert got["product"] == product and "manifest.json" in got["files"]
    verified = json.loads(cli.run("product", "verify", got["folder"], "--json").stdout)
    assert verified["verified"] is True and verified["product"] == product
    head = json.loads(cli.run("ledger", "head", "--json").stdout)
    chain = json.loads(cli.run("ledger", "verify", "--json").stdout)
    assert chain["head_seq"] == head["seq"] and chain["head_hash"] == head["hash"]
    human = cli.run("ledger", "head").stdout
    assert f"hash: {head['hash']}" in human and "{" not in human


def test_grant_list_shows_each_grant_with_its_kinds(cli: Cli):
    mine = json.loads(cli.run("grant", "list", "--json", token="bank").stdout)
    # the home's grants so far (an earlier test adds a direct one): all the bank's on pums
    assert mine and {(g["operator"], g["dataset"], tuple(g["kinds"])) for g in mine} == {
        ("bank", "pums", ("sql_aggregate",))
    }
    text = cli.run("grant", "list", token="bank").stdout
    assert text.splitlines()[0].split() == ["grant", "operator", "dataset", "kinds", "columns",
                                            "ends", "(UTC)", "status"]  # fmt: skip
    # --until 2099-01-01: the whole day in Beijing, which ends at 16:00 UTC
    assert "sql_aggregate" in text and "2099-01-01 16:00" in text
    assert cli.run("grant", "list", token="rival").stdout.strip() == "(no grants)"
    assert len(json.loads(cli.run("grant", "list", "--json", token="audit").stdout)) == len(mine)


def test_tables_line_up_chinese_text():
    from rich.cells import cell_len

    from sandbox.cli.common import table

    text = table(
        [("济宁市公安局", "provider", {"a": 1}), ("water", "operator", None)],
        ("organisation", "role", "terms"),
    )
    lines = text.splitlines()
    starts = [cell_len(line[: line.index(role)]) for line, role in
              zip(lines, ("role", "provider", "operator"), strict=True)]  # fmt: skip
    assert len(set(starts)) == 1, text
    assert '{"a": 1}' in lines[1] and "{'a'" not in text


def test_everything_under_the_home_is_its_owners_alone(cli: Cli):
    """The store (entity numbers), snapshots (raw data), products, keys: 0600 / 0700."""
    loose = []
    for path in [cli.home, *cli.home.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            loose.append(f"{path.relative_to(cli.home)} {mode:04o}")
    assert loose == []
    assert any(cli.home.glob("vault/**/*.parquet")) and any(cli.home.glob("products/*/*"))


def test_an_older_home_open_to_others_is_closed_at_the_next_command(cli: Cli):
    cli.home.chmod(0o755)
    try:
        assert cli.run("ledger", "verify").returncode == 0
        assert cli.home.stat().st_mode & 0o777 == 0o700
    finally:
        cli.home.chmod(0o700)


@pytest.mark.parametrize(
    "args, content, expected",
    [
        (("verify", "define"), "name: [unclosed\n", "--file defn.yaml: not YAML or JSON at line"),
        (("verify", "define"), "- a\n- b\n", "--file defn.yaml: holds list, not a mapping"),
        (("score", "define"), "", "--file defn.yaml: holds nothing, not a mapping"),
        (("model", "train"), b"name: \xff\xfe\n", "--file defn.yaml: not UTF-8 text"),
        (
            ("verify", "call", "any", "--batch"),
            '{"keys": {}}\n{oops\n',
            "--batch defn.yaml, line 2",
        ),
        (("score", "call", "any", "--batch"), "[1, 2\n", "--batch defn.yaml, line 1: not JSON"),
    ],
)
def test_a_file_that_does_not_parse_is_named_by_option_and_line(cli: Cli, args, content, expected):
    """A definition or batch file that is not YAML, JSON or UTF-8 is one error line that
    names the option, the file and where it goes wrong; before, a traceback."""
    path = cli.tmp / "defn.yaml"
    (path.write_bytes if isinstance(content, bytes) else path.write_text)(content)
    option = ("--file",) if args[-1] != "--batch" else ()
    result = cli.run(*args, *option, str(path), token="bank")
    assert result.returncode == 2, result.stderr
    assert expected in _one_error_line(result, "bad_input")


def test_a_folder_given_for_a_file_is_named_not_a_traceback(cli: Cli):
    result = cli.run("verify", "call", "any", "--batch", str(cli.tmp), token="bank")
    assert result.returncode == 2, result.stderr
    assert "cannot be read" in _one_error_line(result, "bad_input")
