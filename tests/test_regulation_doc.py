"""``docs/regulation.md`` names real tests, and every article (issue 20's "done when").

The table is what an official shows a regulator: each obligation, what carries it and
the test that proves it. A renamed or deleted test would leave the table pointing at
nothing; this test fails then, naming the row's reference.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "regulation.md"
REFERENCE = re.compile(r"`(test_[a-z0-9_]+\.py)(?:::([A-Za-z0-9_]+))?`|`::([A-Za-z0-9_]+)`")


def _references() -> list[tuple[str, str | None]]:
    """(file, test) of every reference; ``::name`` belongs to the file named before it."""
    found = []
    for row in PAGE.read_text(encoding="utf-8").splitlines():
        current = None
        for match in REFERENCE.finditer(row):
            if match.group(1):
                current, name = match.group(1), match.group(2)
            else:
                name = match.group(3)
            if current is not None:
                found.append((current, name))
    return found


def test_every_test_the_table_names_exists():
    references = _references()
    assert len(references) > 80
    missing = []
    for file, name in references:
        path = ROOT / "tests" / file
        if not path.exists():
            missing.append(file)
        elif name and not re.search(rf"^def {name}\(", path.read_text(encoding="utf-8"), re.M):
            missing.append(f"{file}::{name}")
    assert not missing, missing


def test_every_article_has_a_row():
    text = PAGE.read_text(encoding="utf-8")
    rows = [r for r in text.splitlines() if r.startswith("| ") and not r.startswith("| Art.")]
    named = set()
    for row in rows:
        first = row.split("|")[1]
        named.update(int(n) for n in re.findall(r"\d+", first))
    assert set(range(1, 27)) - named == set()
