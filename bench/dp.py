"""Benchmark: the accuracy of the DP mode's noisy cells on the demo data, and a year's budget.

Usage::

    python bench/dp.py [--persons 1000000] [--epsilon 1.0] [--year-epsilon 10] [--repeats 100]
    python bench/dp.py --quick # --persons 100000 --repeats 20 (make bench)

Data: the demo tables of ``sandbox.demo.data`` (``--persons`` residents, seed 7).
The person-level table is ``social_insurance`` (one row per insured person and
month of 2025, ``contribution`` in yuan, at most 4,160 a month) joined on ``pid``
to ``persons`` for ``county`` and ``sex``. The entity is the person.

Two tables, each released with COUNT (persons) and SUM (contributions), through
the platform's own :func:`policies.dp.add_noise` (OpenDP's discrete Laplace) at
``--epsilon`` per table, split evenly over its two measurements (basic
composition):

``county_sex``
    22 cells; one person lies in one cell (L0 = 1). SUM over each person's
    yearly contributions clamped to [0, 60,000]: sensitivity 60,001 per cell.
``county_month``
    132 cells; one person lies in up to 12 cells, one a month (L0 = 12), so the
    L1 sensitivity is 12 per COUNT column and 12 x 5,001 per SUM column (each
    person-month clamped to [0, 5,000]): the noise scale is 12 times that of a
    one-cell-per-person table at the same epsilon.

The figures are medians, over the cells with at least 100 persons and
``--repeats`` independent releases, of ``|noisy - true| / true``; beside them, the
same error for a cell of exactly 100 persons (the smallest the aim covers:
the median |noise| over 100). The bounds lie above every value, so clamping
biases nothing here.

Budget arithmetic: a yearly budget ``--year-epsilon`` per person under pure
epsilon-DP and basic sequential composition (every table over the same
population spends from it, city-wide), so T tables a year get ``epsilon_year / T``
each. For T in ``--tables`` the median errors are printed, and the largest T
whose COUNT cells (>= 100 persons, and a 100-person cell) keep a median
relative error under 5%, the aim. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import _results
import duckdb
import numpy as np
import pyarrow as pa
from _results import figure

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from policies.disclosure import CheckResult, DisclosureParams, OutputVerdict  # noqa: E402
from policies.dp import MECHANISM, Bounds, add_noise, plan  # noqa: E402
from policies.outputs import OutputColumn, OutputRole, OutputSpec  # noqa: E402
from sandbox.demo.data import demo_tables  # noqa: E402

AIM = 0.05  # median relative error of COUNT cells with >= 100 persons
MIN_PERSONS = 100
YEAR_BOUND = 60_000.0  # a person's yearly contributions, clamped
MONTH_BOUND = 5_000.0  # a person's contribution in one month, clamped
SPEC = OutputSpec(
    columns=(
        OutputColumn("county", OutputRole.GROUP, group_key="county"),
        OutputColumn("other", OutputRole.GROUP, group_key="other"),
        OutputColumn("n", OutputRole.AGGREGATE, "count_distinct"),
        OutputColumn("s", OutputRole.AGGREGATE, "sum"),
    ),
    group_keys=("county", "other"),
    grouping_sets=(("county", "other"),),
)


def median_abs_noise(scale: float) -> int:
    """The exact median of |X| for the discrete Laplace of ``scale``: the smallest k with
    ``P(|X| <= k) = 1 - 2 q^(k+1) / (1 + q) >= 1/2``, ``q = exp(-1/scale)``."""
    q = math.exp(-1 / scale)
    return max(0, math.ceil(math.log((1 + q) / 4) / math.log(q) - 1e-12) - 1)


class Table:
    """One table's true cells and how to release it through the DP mode."""

    def __init__(self, name: str, cells: pa.Table, bound: float, rows_per_entity: int) -> None:
        self.name = name
        self.cells = cells
        self.bounds = {3: Bounds(0.0, bound)}
        self.rows_per_entity = rows_per_entity
        self.n = np.asarray(cells.column("n").to_pylist(), dtype=float)
        self.total = np.asarray(cells.column("total").to_pylist(), dtype=float)
        released = pa.table({"county": cells.column("county"), "other": cells.column("other")})
        released = released.append_column("n", cells.column("n")).append_column(
            "s", cells.column("total")
        )
        self.result = CheckResult(OutputVerdict.RELEASED, released, (), {}, DisclosureParams())
        self.raw = pa.table(
            {
                "__n_2": cells.column("n"),
                "__n_3": cells.column("n"),
                "__clamped_3": cells.column("clamped"),
            }
        )

    def release(self, epsilon: float) -> tuple[np.ndarray, np.ndarray]:
        noisy = add_noise(
            self.result, self.raw, SPEC, epsilon, self.bounds, self.rows_per_entity
        ).released
        return (
            np.asarray(noisy.column("n").to_pylist(), dtype=float),
            np.asarray(noisy.column("s").to_pylist(), dtype=float),
        )

    def errors(self, epsilon: float, repeats: int) -> dict[str, float]:
        """Median relative errors over cells >= 100 persons and repeats; a 100-person cell's."""
        big = self.n >= MIN_PERSONS
        count_err, sum_err = [], []
        for _ in range(repeats):
            n, s = self.release(epsilon)
            count_err.append(np.abs(n - self.n)[big] / self.n[big])
            sum_err.append(np.abs(s - self.total)[big] / self.total[big])
        scale = plan(SPEC, epsilon, self.bounds, self.rows_per_entity)[2][0].scale
        at_100 = median_abs_noise(scale) / MIN_PERSONS
        return {
            "count": float(np.median(np.concatenate(count_err))),
            "sum": float(np.median(np.concatenate(sum_err))),
            "count_at_100": at_100,
            "count_scale": scale,
        }


def tables(persons: int) -> list[Table]:
    data = demo_tables(persons)
    con = duckdb.connect()
    con.register("persons", data["persons"].select(["pid", "county", "sex"]))
    con.register("si", data["social_insurance"].select(["pid", "month", "contribution"]))
    per_person = """
        SELECT county, {other} AS other, pid, SUM(contribution) AS v
        FROM si JOIN persons USING (pid) GROUP BY ALL
    """
    cells = """
        SELECT county, other, COUNT(*) AS n, SUM(v) AS total,
               SUM(LEAST(GREATEST(v, 0), {bound})) AS clamped
        FROM ({per_person}) GROUP BY county, other ORDER BY county, other
    """
    out = []
    for name, other, bound, l0 in (
        ("county_sex", "sex", YEAR_BOUND, 1),
        ("county_month", "CAST(month AS VARCHAR)", MONTH_BOUND, 12),
    ):
        sql = cells.format(bound=bound, per_person=per_person.format(other=other))
        out.append(Table(name, con.sql(sql).to_arrow_table(), bound, l0))
    most = con.execute(
        "SELECT MAX(n) FROM (SELECT pid, COUNT(*) n FROM si GROUP BY pid)"
    ).fetchone()
    assert most is not None and most[0] <= 12  # the L0 bound of county_month holds
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--epsilon", type=float, default=1.0, help="epsilon per table")
    parser.add_argument("--year-epsilon", type=float, default=10.0)
    parser.add_argument("--tables", type=int, nargs="+", default=[1, 2, 3, 5, 10, 20, 30, 50, 100])
    parser.add_argument("--repeats", type=int, default=100)
    quick = {"persons": 100_000, "repeats": 20}
    args = _results.parse_args(parser, quick)
    with _results.recording(__file__, args):
        run(args)


def run(args: argparse.Namespace) -> None:
    start = time.perf_counter()
    built = tables(args.persons)
    figure("mechanism", MECHANISM)
    figure(
        "persons", args.persons, note="demo residents; the demo county table sums to 8.0 million"
    )
    figure("data_s", time.perf_counter() - start, "s")
    for t in built:
        big = int((t.n >= MIN_PERSONS).sum())
        figure(f"{t.name}_cells", len(t.n), note=f"{big} with >= {MIN_PERSONS} persons")
        figure(f"{t.name}_median_persons", statistics.median(t.n.tolist()), fmt=",.0f")
        figure(f"{t.name}_l0", t.rows_per_entity, "cells per person")

    print(f"# one table at epsilon {args.epsilon:g} (COUNT and SUM, {args.epsilon / 2:g} each)")
    for t in built:
        e = t.errors(args.epsilon, args.repeats)
        figure(f"{t.name}_count_scale", e["count_scale"], note="discrete Laplace scale")
        figure(f"{t.name}_count_median_rel_error", 100 * e["count"], "%", f"aim < {AIM:.0%}")
        figure(f"{t.name}_count_rel_error_at_100", 100 * e["count_at_100"], "%")
        figure(f"{t.name}_sum_median_rel_error", 100 * e["sum"], "%")

    print(
        f"# a year: epsilon_year {args.year_epsilon:g} per person, pure epsilon-DP, basic "
        "composition over every table city-wide: T tables get epsilon_year / T each"
    )
    for t in built:
        allowed = 0
        for count in sorted(args.tables):
            eps = args.year_epsilon / count
            e = t.errors(eps, max(5, args.repeats // 4))
            figure(
                f"{t.name}_T{count}",
                f"eps {eps:.3g}: COUNT {100 * e['count']:.2f}% (100-person cell "
                f"{100 * e['count_at_100']:.1f}%), SUM {100 * e['sum']:.2f}%",
                note="median relative errors",
            )
            if max(e["count"], e["count_at_100"]) < AIM:
                allowed = count
        figure(
            f"{t.name}_tables_per_year_within_aim",
            allowed,
            "tables",
            f"largest T of {sorted(args.tables)} with COUNT errors < {AIM:.0%}, 100-person cell too",
        )


if __name__ == "__main__":
    main()
