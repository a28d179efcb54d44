"""Write ``acro_cases.yaml``: ACRO's verdict, cell by cell, on the tables of ACRO's own
tests that can be built from the charities data.

ACRO (PyPI ``acro``, the SACRO output checker) is the reference for issue 17. This
script is not part of the project's environment: it runs under a separate venv that
has ``acro`` installed, and only its output, the YAML file beside it, is read by
``tests/test_acro_golden.py``. From the repository's root (``.venv/`` is ignored by git)::

    python3.11 -m venv .venv/acro
    .venv/acro/bin/pip install acro==1.0.2 pyarrow
    .venv/acro/bin/python tests/golden/make_acro_cases.py

Each case names the ACRO test it reproduces (``test/<file>.py::<function>`` in the
AI-SDC/ACRO repository), the table (``crosstab`` or ``pivot_table``: row and column
variables, the measure, the aggregate functions, margins), the rows it runs on (a
filter on dimensions, or row changes by ``row_id`` when the ACRO test edits the data)
and ACRO's risk appetite for it. ACRO runs it twice, without suppression (the values)
and with suppression (what it blanks); for every cell of the table the file records
its keys (a variable absent from ``keys`` is a margin), the aggregate, the value, the
checks ACRO's outcome names for it, and whether ACRO blanks it. A cell is *protected*
when ACRO names a check for it or blanks it.
"""

from __future__ import annotations

import logging
import math
import sys
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from acro import ACRO

HERE = Path(__file__).resolve().parent
DATA = HERE.parent / "data" / "charities.parquet"
OUT = HERE / "acro_cases.yaml"
DIMENSIONS = ("year", "grant_type", "status", "survivor")
MARGIN = "All"  # pandas' label for a margin
# ACRO's appetite keys that the platform's settings express (see the test)
APPETITE_KEYS = (
    "safe_threshold",
    "safe_nk_n",
    "safe_nk_k",
    "safe_pratio_p",
    "zeros_are_disclosive",
    "check_missing_values",
)

TABLES = "test/test_tables.py::"
SDC = "test/test_sdcchecks.py::"
UTILS = "test/test_table_utils.py::"

# One entry per table an ACRO test builds on the charities data (and probes, acro_test
# None, with a note saying why). Keys:
#   call: crosstab | pivot_table; rows, columns: variables; values: the measure
#   (None: a frequency table); aggfunc: one name or a list; margins: bool;
#   where: [[column, "==" | "!=" | "in", value]] applied first;
#   head: keep only the first N rows (after where);
#   edits: [[column, value, how, a, b]] in order, how "labels" (pandas .loc[a:b],
#     both ends included) or "positions" (.iloc[a:b]); b None means to the end;
#   appetite: ACRO risk-appetite overrides the test sets.
CASES: list[dict[str, Any]] = [
    {
        "name": "frequency year x grant_type",
        "acro_test": TABLES + "test_crosstab_threshold",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
    },
    {
        "name": "mode of inc_grants by year x grant_type",
        "acro_test": TABLES + "test_crosstab_with_aggfunc_mode",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": "mode",
    },
    {
        "name": "sum of inc_grants by year x survivor",
        "acro_test": TABLES + "test_crosstab_with_aggfunc_sum",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["survivor"],
        "values": "inc_grants",
        "aggfunc": "sum",
    },
    {
        "name": "mean of inc_grants by year x grant_type",
        "acro_test": TABLES + "test_crosstab_multiple",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": "mean",
    },
    {
        "name": "negatives: mean of inc_grants by year x grant_type",
        "acro_test": TABLES + "test_tables_negatives",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": "mean",
        "edits": [["inc_grants", -10, "labels", 0, 10]],
    },
    {
        "name": "negatives: mean and std of inc_grants by grant_type",
        "acro_test": TABLES + "test_tables_negatives",
        "call": "pivot_table",
        "rows": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": ["mean", "std"],
        "edits": [["inc_grants", -10, "labels", 0, 10]],
    },
    {
        "name": "mean and sum of inc_grants by grant_type",
        "acro_test": TABLES + "test_pivot_table_pass",
        "call": "pivot_table",
        "rows": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": ["mean", "sum"],
    },
    {
        "name": "mean and std of inc_grants by grant_type x year",
        "acro_test": TABLES + "test_pivot_table_cols",
        "call": "pivot_table",
        "rows": ["grant_type"],
        "columns": ["year"],
        "values": "inc_grants",
        "aggfunc": ["mean", "std"],
    },
    {
        "name": "sum of inc_grants by year x grant_type x survivor",
        "acro_test": TABLES + "test_pivot_table_with_aggfunc_sum",
        "call": "pivot_table",
        "rows": ["year"],
        "columns": ["grant_type", "survivor"],
        "values": "inc_grants",
        "aggfunc": "sum",
    },
    {
        "name": "missing: mean of inc_grants by year x grant_type",
        "acro_test": TABLES + "test_tables_missing",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": "mean",
        "where": [["grant_type", "!=", "R/G"], ["year", "!=", 2010]],
        "edits": [["inc_grants", None, "labels", 0, 50]],
        "appetite": {"check_missing_values": True},
    },
    {
        "name": "missing: mean and std of inc_grants by grant_type",
        "acro_test": TABLES + "test_tables_missing",
        "call": "pivot_table",
        "rows": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": ["mean", "std"],
        "where": [["grant_type", "!=", "R/G"], ["year", "!=", 2010]],
        "edits": [["inc_grants", None, "labels", 0, 50]],
        "appetite": {"check_missing_values": True},
    },
    {
        "name": "mean and std of inc_grants by year x grant_type",
        "acro_test": TABLES + "test_crosstab_multiple_aggregate_function_no_suppression",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": ["mean", "std"],
    },
    {
        "name": "mean and std of inc_grants by survivor x grant_type with margins",
        "acro_test": TABLES + "test_crosstab_multi_aggfunc",
        "call": "crosstab",
        "rows": ["survivor"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": ["mean", "std"],
        "margins": True,
    },
    {
        "name": "sum of inc_activity by year x survivor x grant_type without G",
        "acro_test": TABLES + "test_hierachical_aggregation",
        "call": "crosstab",
        "rows": ["year", "survivor"],
        "columns": ["grant_type"],
        "values": "inc_activity",
        "aggfunc": "sum",
        "where": [["grant_type", "!=", "G"]],
    },
    {
        "name": "zeros not disclosive: mean and std of inc_grants by grant_type x year",
        "acro_test": TABLES + "test_zeros_are_not_disclosive",
        "call": "pivot_table",
        "rows": ["grant_type"],
        "columns": ["year"],
        "values": "inc_grants",
        "aggfunc": ["mean", "std"],
        "appetite": {"zeros_are_disclosive": False},
    },
    {
        "name": "frequency year x grant_type with margins",
        "acro_test": TABLES + "test_crosstab_with_totals_with_suppression",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "margins": True,
    },
    {
        "name": "frequency year x survivor x grant_type x status with margins",
        "acro_test": TABLES + "test_crosstab_with_totals_with_suppression_hierarchical",
        "call": "crosstab",
        "rows": ["year", "survivor"],
        "columns": ["grant_type", "status"],
        "margins": True,
    },
    {
        "name": "mean of inc_grants by year x grant_type with margins",
        "acro_test": TABLES + "test_crosstab_with_totals_with_suppression_with_mean",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": "mean",
        "margins": True,
    },
    {
        "name": "mean of inc_grants in 2010, G, dead, with margins",
        "acro_test": TABLES + "test_crosstab_with_totals_and_empty_data",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type", "survivor"],
        "values": "inc_grants",
        "aggfunc": "mean",
        "margins": True,
        "where": [
            ["year", "==", 2010],
            ["grant_type", "==", "G"],
            ["survivor", "==", "Dead in 2015"],
        ],
    },
    {
        "name": "mode of inc_grants by grant_type",
        "acro_test": TABLES + "test_pivot_table_aggfunc_mode",
        "call": "pivot_table",
        "rows": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": "mode",
    },
    {
        "name": "negatives, threshold 5: sum of inc_grants by year x grant_type",
        "acro_test": SDC + "test_check_nk_dominance_with_negatives",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": "sum",
        "edits": [["inc_grants", -500, "positions", 0, 20]],
        "appetite": {"safe_threshold": 5},
    },
    {
        "name": "negatives, threshold 5: mean of inc_grants by year x grant_type",
        "acro_test": SDC + "test_check_ppercent_with_negatives",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": "mean",
        "edits": [["inc_grants", -100, "positions", 0, 50]],
        "appetite": {"safe_threshold": 5},
    },
    {
        "name": "frequency year x grant_type in 2010 and 2011",
        "acro_test": SDC + "test_check_presence_of_zero_disclosive",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "where": [["year", "in", [2010, 2011]]],
    },
    {
        "name": "count of inc_grants by year x grant_type, first 5 rows",
        "acro_test": SDC + "test_check_min_threshold_below_threshold",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": "count",
        "head": 5,
    },
    {
        "name": "dominance: sum of inc_grants by year x grant_type, one huge row",
        "acro_test": SDC + "test_check_nk_dominance_violation",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": "sum",
        "edits": [
            ["inc_grants", 1000000, "positions", 0, 1],
            ["inc_grants", 1000, "positions", 1, None],
            ["inc_grants", 1, "positions", 2, None],
        ],
    },
    {
        "name": "p%: sum of inc_grants by year x grant_type, one huge row",
        "acro_test": SDC + "test_check_ppercent_dominance_violation",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": "sum",
        "edits": [
            ["inc_grants", 1000000, "positions", 0, 1],
            ["inc_grants", 500, "positions", 1, 2],
            ["inc_grants", 5, "positions", 2, None],
        ],
    },
    {
        "name": "balanced: sum of inc_grants = 100 by year x grant_type",
        "acro_test": SDC + "test_check_ppercent_normal_pass",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": "sum",
        "edits": [["inc_grants", 100, "positions", 0, None]],
    },
    {
        "name": "single row: sum of inc_grants = 1000",
        "acro_test": SDC + "test_check_ppercent_single_element",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": "sum",
        "head": 1,
        "edits": [["inc_grants", 1000, "positions", 0, None]],
    },
    {
        "name": "negatives: mean of inc_grants = -1 in the first 30 rows",
        "acro_test": UTILS + "test_collate_risk_assessments_negative_path",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": "mean",
        "edits": [["inc_grants", -1, "positions", 0, 30]],
    },
    {
        "name": "missing: mean of inc_grants missing in the first 15 rows",
        "acro_test": UTILS + "test_collate_risk_assessments_missing_path",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["grant_type"],
        "values": "inc_grants",
        "aggfunc": "mean",
        "edits": [["inc_grants", None, "positions", 0, 15]],
        "appetite": {"check_missing_values": True},
    },
    {
        "name": "probe: mean of sh_staff_grants_given by year x survivor",
        "acro_test": None,
        "note": "not an ACRO test: a table of the kind of test_crosstab_multiple whose cell "
        "(2010, Dead in 2015) averages 26 charities' zeros; ACRO's p% check flags a cell "
        "whose largest contribution is zero",
        "call": "crosstab",
        "rows": ["year"],
        "columns": ["survivor"],
        "values": "sh_staff_grants_given",
        "aggfunc": "mean",
    },
]


def load() -> pd.DataFrame:
    """The charities as ACRO's tests read them (``pd.read_stata``): the text
    dimensions as categoricals."""
    frame = pd.read_parquet(DATA)
    for name in ("grant_type", "status", "survivor"):
        frame[name] = frame[name].astype(pd.CategoricalDtype(sorted(frame[name].unique())))
    return frame


def rows_of(frame: pd.DataFrame, case: dict) -> tuple[pd.DataFrame, list[dict]]:
    """The rows the case's table is built from, and its edits as explicit row_ids."""
    for column, op, value in case.get("where", []):
        if op == "==":
            frame = frame[frame[column] == value]
        elif op == "!=":
            frame = frame[frame[column] != value]
        elif op == "in":
            frame = frame[frame[column].isin(value)]
        else:
            raise ValueError(f"unknown filter operator {op!r}")
    if "head" in case:
        frame = frame.head(case["head"])
    frame = frame.copy()
    edits = []
    for column, value, how, a, b in case.get("edits", []):
        new = math.nan if value is None else value
        if how == "labels":
            chosen = frame.loc[a:b].index
        elif how == "positions":
            chosen = frame.index[a:b]
        else:
            raise ValueError(f"unknown edit kind {how!r}")
        frame.loc[chosen, column] = new
        row_ids = sorted(int(r) for r in frame.loc[chosen, "row_id"])
        edits.append({"column": column, "value": value, "row_ids": _runs(row_ids)})
    return frame, edits


def _runs(numbers: list[int]) -> list[list[int]]:
    """Sorted whole numbers as runs ``[first, last]``, both included."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return runs


def run_acro(frame: pd.DataFrame, case: dict, appetite: dict, suppress: bool):
    """The table ACRO returns and its record (outcome, sdc) for one case."""
    checker = ACRO(suppress=suppress)
    logging.getLogger("acro").setLevel(logging.WARNING)
    checker.sdc_checks.risk_appetite.update(appetite)
    aggfunc = case.get("aggfunc")
    if case["call"] == "crosstab":

        def axis(names: list[str]):
            series = [frame[n] for n in names]
            return series[0] if len(series) == 1 else series

        values = frame[case["values"]] if case.get("values") else None
        table = checker.crosstab(
            axis(case["rows"]),
            axis(case["columns"]),
            values=values,
            aggfunc=aggfunc,
            margins=case.get("margins", False),
        )
    else:
        table = checker.pivot_table(
            frame,
            index=case["rows"],
            columns=case.get("columns") or None,
            values=[case["values"]],
            aggfunc=aggfunc,
            margins=case.get("margins", False),
        )
    record = checker.results.get_index(-1)
    return table, record


def _labels(index: pd.Index, position: int) -> list[tuple[Any, Any]]:
    label = index[position]
    label = label if isinstance(label, tuple) else (label,)
    return list(zip(index.names, label, strict=True))


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def cells_of(case: dict, raw: pd.DataFrame, blanked: pd.DataFrame, outcome: pd.DataFrame):
    """One entry per cell of ACRO's table: keys, aggregate, value, checks, blanked."""
    functions = case.get("aggfunc") or "count"
    functions = functions if isinstance(functions, list) else [functions]
    dims = set(case["rows"]) | set(case.get("columns", []))
    if raw.shape != outcome.shape:
        raise RuntimeError(f"{case['name']}: table and outcome differ in shape")
    # the suppressed table may drop a row or column that is wholly blank
    blanked = blanked.reindex(index=raw.index, columns=raw.columns)
    cells = []
    for i in range(raw.shape[0]):
        for j in range(raw.shape[1]):
            labels = _labels(raw.index, i) + _labels(raw.columns, j)
            keys: dict[str, Any] = {}
            function = functions[0] if len(functions) == 1 else None
            for name, label in labels:
                if name in dims:
                    if label != MARGIN and label != "":
                        keys[name] = _plain(label)
                elif label in functions:
                    function = label
                elif label not in (case.get("values"), "", MARGIN):
                    raise RuntimeError(f"{case['name']}: unexpected label {name}={label!r}")
            if function is None:
                raise RuntimeError(f"{case['name']}: no aggregate for cell {labels}")
            note = str(outcome.iat[i, j])  # "ok", or "Check; Check; " (after "ok" at times)
            note = note[2:] if note.startswith("ok") else note
            checks = sorted({c.strip() for c in note.split(";") if c.strip()})
            # a mode is one of the modes at random: the file keeps no value for it
            value = None if function == "mode" else _plain(raw.iat[i, j])
            gone = _plain(raw.iat[i, j]) is not None and _plain(blanked.iat[i, j]) is None
            cells.append(
                {
                    "keys": keys,
                    "aggfunc": function,
                    "value": value,
                    "checks": checks,
                    "blanked": gone,
                    "protected": bool(checks) or gone,
                }
            )
    return cells


def main() -> int:
    warnings.simplefilter("ignore")
    data = load()
    defaults = {k: ACRO(suppress=False).sdc_checks.risk_appetite[k] for k in APPETITE_KEYS}
    out = []
    for number, case in enumerate(CASES, start=1):
        appetite = {**defaults, **case.get("appetite", {})}
        frame, edits = rows_of(data, case)
        raw, record = run_acro(frame, case, appetite, suppress=False)
        blanked, _ = run_acro(frame, case, appetite, suppress=True)
        entry = {
            "id": f"acro{number:02d}",
            "name": case["name"],
            "acro_test": case["acro_test"],
            **({"note": case["note"]} if "note" in case else {}),
            "call": case["call"],
            "rows": case["rows"],
            "columns": case.get("columns", []),
            "values": case.get("values"),
            "aggfunc": case.get("aggfunc") or "count",
            "margins": case.get("margins", False),
            "where": case.get("where", []),
            "head": case.get("head"),
            "edits": edits,
            "appetite": appetite,
            "acro_status": record.status,
            "acro_summary": {k: v for k, v in record.sdc.get("summary", {}).items() if v},
            "cells": cells_of(case, raw, blanked, record.outcome),
        }
        out.append(entry)
        protected = sum(c["protected"] for c in entry["cells"])
        print(f"{entry['id']} {case['name']}: {len(entry['cells'])} cells, {protected} protected")
    header = (
        "# Written by tests/golden/make_acro_cases.py; do not edit by hand.\n"
        "# ACRO's verdict, cell by cell, on tables of ACRO's own tests built from the\n"
        "# charities data (tests/data/charities.parquet). A key absent from 'keys' is a margin.\n"
        "# checks: the checks ACRO's outcome names for the cell; blanked: ACRO suppresses it;\n"
        "# protected: either. edits: row_ids as runs [first, last].\n"
    )
    lines = [f"acro_version: {version('acro')}", "cases:"]
    for entry in out:
        cells = entry.pop("cells")
        block = yaml.safe_dump(
            [entry], sort_keys=False, allow_unicode=True, width=100, default_flow_style=None
        )
        lines.append(block.rstrip("\n"))
        lines.append("  cells:")  # one cell a line
        for cell in cells:
            flow = yaml.safe_dump(cell, sort_keys=False, default_flow_style=True, width=10**6)
            lines.append("  - " + flow.strip())
    body = "\n".join(lines) + "\n"
    OUT.write_text(header + body, encoding="utf-8")
    print(f"wrote {OUT} ({len(out)} cases)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
