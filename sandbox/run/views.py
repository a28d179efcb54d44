"""What an operator is shown of its own jobs (issue 17, "no oracle").

The output check's report names, cell by cell, the rules that fired, and counts
the cells of the raw result. Shown to the operator of a job that was not
released, that is an oracle: whether a withheld job had "none of the 1 cells"
or "no aggregate cell", or which rule held a cell back, answers a question about
hidden values, and a search over such questions finds them. So the operator's
view of a job depends only on the SQL, the grants, the declared metadata and
its own earlier answers:

* a withheld job says only that it is withheld for review (no cell counts, no
  rule names, no per-cell reasons, no values);
* a released job, and the report of its product, list which cells are
  suppressed, never why (a dominance or differencing suppression would tell
  something a threshold suppression does not);
* a refusal (admission, grants gate, DP budget) is decided before the run and
  is shown as it is; a failure names its limit (limits are settings);
* times shown are whole seconds, rounded up (:func:`coarse_time`).

:func:`sandbox.run.jobstate.job_outcome` applies these to the operator; the full
report stays in the store for the authority and the auditors, in the ledger, and
with the held output for the output checkers.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

ARTICLE = "Art. 15"

WITHHELD_SUMMARY = (
    "Withheld for review: nothing is released until two output checkers approve it "
    f"({ARTICLE}). What the output check found is shown to the checkers and auditors only."
)


def withheld_report() -> dict[str, Any]:
    """The whole report of a withheld job as its operator reads it: the same for every job."""
    return {"verdict": "withheld", "summary": WITHHELD_SUMMARY}


def _suppressed(cell: dict) -> bool:
    return str(cell.get("verdict", "")).startswith("suppress")


def released_report(report: dict[str, Any]) -> dict[str, Any]:
    """A released output's report as the operator reads it (job view and ``report.json``).

    Which cells are suppressed (they are empty in the released table) and the
    rules' parameters; not why a cell was suppressed, nor notes about cells
    that passed (e.g. that some rows lacked a value).
    """
    counts = report.get("counts") or {}
    cells = [
        {"row": c["row"], "column": c["column"]}
        for c in report.get("cells") or []
        if _suppressed(c)
    ]
    total = int(counts.get("cells", 0))
    rounded = int(counts.get("rounded", 0))
    if cells:
        lines = [
            f"Released with {len(cells)} of {total} cells suppressed ({ARTICLE}); they are "
            "empty in the released table. Why a cell is suppressed is shown to the output "
            "checkers and auditors only."
        ]
    else:
        lines = [f"Released: all {total} cells passed the output check ({ARTICLE})."]
    params = report.get("params") or {}
    if rounded:
        base = params.get("rounding_base", 5)
        lines.append(f"Note: count cells are rounded to a multiple of {base}.")
    shown: dict[str, Any] = {
        "verdict": "released_with_suppressions" if cells else "released",
        "summary": "\n".join(lines),
        "counts": {"cells": total, "suppressed": len(cells), "rounded": rounded},
        "params": params,
        "suppressed_cells": cells,
    }
    if "dp" in report:  # the operator's own budget: its earlier answers
        shown["dp"] = report["dp"]
    return shown


def released_manifest(manifest: dict[str, Any], shown: dict[str, Any]) -> dict[str, Any]:
    """A product manifest's fields with the operator's view of the check and a coarse time
    (``write_files`` lets these fields override its own ``created_at``)."""
    out = dict(manifest)
    out["created_at"] = coarse_time()
    if "check" in out:
        out["check"] = {"counts": shown["counts"], "summary": shown["summary"]}
    if "verdict" in out:
        out["verdict"] = shown["verdict"]
    return out


def coarse_time(stamp: str | None = None) -> str:
    """An ISO time in UTC, rounded up to the whole second (now, when not given).

    Times an operator sees that follow a run (a product's ``created_at``) are
    coarse, so how long a job ran does not tell more than the seconds it took.
    """
    moment = datetime.fromisoformat(stamp) if stamp else None
    if moment is None:
        from sandbox.core.ledger import now_utc

        moment = datetime.fromisoformat(now_utc())
    whole = math.ceil(moment.timestamp())
    return datetime.fromtimestamp(whole, tz=moment.tzinfo).isoformat(timespec="microseconds")
