"""The code type-checks: mypy, with the settings in pyproject.toml ([tool.mypy]), finds
no error in ``policies``, ``jobs``, ``connectors`` and ``sandbox``.

``policies`` and ``jobs`` are held to mypy's strict flags, the rest to its defaults.
Run through ``make test`` (as CI does) so a type error fails the build like a broken
test; ``make typecheck`` runs the same check alone. A first run, with no
``.mypy_cache`` yet, takes some fifteen seconds; later ones about one.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_mypy_finds_no_error():
    done = subprocess.run(
        [sys.executable, "-m", "mypy"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, f"mypy found errors (run `make typecheck`):\n{report}"
    assert "Success: no issues found" in report
