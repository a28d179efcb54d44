"""A command that only reads loads only what reading needs (issue 23, the CLI's start).

Each command of the walkthrough is a process of its own, and a command that lists jobs
once loaded scikit-learn (through OpenDP's prelude) and SciPy's optimiser (through the
interval audit) before it printed a line: two seconds, against 0.4 s now. The commands
here run in a fresh interpreter, in process through click, and the modules they loaded
are then read from ``sys.modules``: the libraries that only a job's run, an audit, a
model or a server needs must be absent.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from api_server import make_home

# Loaded by a job's run, a table's audit, a model's training or the HTTP server, never
# by a command that reads the store.
HEAVY = ("sklearn", "scipy", "opendp", "matplotlib", "tenseal", "pyspark", "ray", "fastapi")

PROBE = """
import json, sys
from sandbox.cli.app import main
try:
    main(sys.argv[1:], standalone_mode=False)
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules)), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli-start") / "home"
    return path, make_home(path)


def _loaded(home, *args: str) -> set[str]:
    path, _tokens = home
    done = subprocess.run(
        [sys.executable, "-c", PROBE, "--home", str(path), *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


@pytest.mark.parametrize(
    "command, role",
    [
        (("job", "list"), "operator"),
        (("notice", "list"), "operator"),
        (("agreement", "list"), "authority"),
        (("ledger", "show", "--limit", "3"), "auditor"),
    ],
)
def test_a_reading_command_loads_no_heavy_library(home, command, role):
    loaded = _loaded(home, *command, "--as", home[1][role])
    assert "sandbox.core.platform" in loaded  # it did open the platform
    heavy = sorted(m for m in loaded if m.split(".")[0] in HEAVY)
    assert not heavy, f"sandbox {' '.join(command)} loaded {heavy[:8]}"


def test_the_probe_sees_a_heavy_library_when_one_is_loaded(home):
    """The check can fail: submitting a job loads the job service, which needs OpenDP."""
    loaded = _loaded(home, "job", "submit", "--sql", "-", "--as", home[1]["operator"])
    assert "opendp" in loaded


def test_an_unexpected_fault_is_one_line_and_debug_shows_the_traceback(tmp_path):
    """The group's last net: a command that fails with an exception that is not one of
    ours prints one ``error [internal]`` line and exits 1; ``--debug`` shows the traceback."""
    from click.testing import CliRunner

    from sandbox.cli.common import main

    @main.command("fault-probe", hidden=True)
    def fault_probe() -> None:
        raise ZeroDivisionError("a fault of the test")

    try:
        runner = CliRunner()
        home = ["--home", str(tmp_path / "home")]
        plain = runner.invoke(main, [*home, "fault-probe"])
        assert plain.exit_code == 1
        assert plain.output.strip().splitlines() == [
            "error [internal]: ZeroDivisionError: a fault of the test; run the command again "
            "with --debug for the traceback, and report it to the platform's maintainers"
        ]
        debug = runner.invoke(main, ["--debug", *home, "fault-probe"])
        assert isinstance(debug.exception, ZeroDivisionError)
    finally:
        main.commands.pop("fault-probe", None)
