"""The differential-privacy mode: calibrated noise on released cells, and budget arithmetic.

The differencing defence stops a pair (or a small family) of releases from
isolating a few entities; it cannot stop linear reconstruction from many
overlapping releases. Differential privacy bounds what *any* combination of
releases reveals about one entity, at a price counted in epsilon.

Mechanism: the discrete Laplace (two-sided geometric) distribution on
integers, ``P(x) ~ exp(-|x| / scale)``, sampled as the difference of two
geometric variables. Integer noise on integer-rounded values avoids the
floating-point attacks on the continuous Laplace mechanism (Mironov 2012).

Per job (entity-level DP, each entity's contribution bounded):

* COUNT cells release the noisy number of contributing **entities** (the
  evidence ``__n_i``), sensitivity 1 per cell;
* SUM cells release the noisy sum of per-entity sums clamped to the bounds
  declared for the measure column (``__clamped_i``), sensitivity
  ``ceil(max(|lo|, |hi|)) + 1`` (the +1 covers rounding the total);
* AVG cells are a noisy clamped sum over a noisy entity count (two measurements).

One entity lies in one row per grouping set, so a job's epsilon is split
evenly over (grouping sets x measurements per row): basic sequential
composition across those, parallel composition across the disjoint rows.

Known shortcuts (docs/disclosure.md): the noise generator is numpy's PCG64
seeded from the OS (``secrets``), not a cryptographically audited sampler such
as OpenDP's (the ``opendp`` package is not a dependency yet); which groups
appear, and the threshold rule's suppressions, are decided on true values,
which is not covered by the DP guarantee (declared public group domains would
remove that, not built).
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from .disclosure import COUNTS, CellVerdict, CheckResult
from .errors import PolicyRefusal
from .outputs import OutputRole, OutputSpec, evidence_name

ARTICLE = "Art. 15"
SUPPORTED = COUNTS | {"sum", "avg"}


def rng(seed: int | None = None) -> np.random.Generator:
    """A noise generator: seeded for tests, from the OS's randomness otherwise."""
    return np.random.default_rng(secrets.randbits(128) if seed is None else seed)


def discrete_laplace(
    scale: float, generator: np.random.Generator, size: int | None = None
) -> int | npt.NDArray[np.int64]:
    """Samples of the discrete Laplace distribution with ``P(x) ~ exp(-|x|/scale)``.

    Variance ``2 q / (1 - q)^2`` with ``q = exp(-1/scale)``.
    """
    if not scale > 0:
        raise ValueError("scale must be positive")
    p = -math.expm1(-1.0 / scale)  # 1 - exp(-1/scale), exact for large scales
    return generator.geometric(p, size) - generator.geometric(p, size)


def discrete_laplace_variance(scale: float) -> float:
    q = math.exp(-1.0 / scale)
    return 2 * q / (1 - q) ** 2


@dataclass(frozen=True)
class Bounds:
    """The range a provider declares for one entity's value of a measure column."""

    lower: float
    upper: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.lower) and math.isfinite(self.upper)):
            raise ValueError("bounds must be finite")
        if self.lower > self.upper:
            raise ValueError("the lower bound must not exceed the upper bound")

    @property
    def sensitivity(self) -> int:
        return math.ceil(max(abs(self.lower), abs(self.upper))) + 1


def measurements(spec: OutputSpec) -> int:
    """How many noisy measurements one entity's data enters in one job."""
    per_row = sum(2 if c.function == "avg" else 1 for _, c in spec.aggregates())
    return max(1, per_row) * max(1, len(spec.grouping_sets))


def refuse_unsupported(
    spec: OutputSpec, arguments: Mapping[int, str | None], bounds: Mapping[str, Bounds]
) -> None:
    """Refuse, before the job runs, what the DP mode cannot release (Art. 15).

    ``arguments`` maps each SUM/AVG output position to its argument's column name
    (``None`` for an expression), ``bounds`` the declared bounds by column.
    """
    for i, column in spec.aggregates():
        fn = column.function or ""
        if fn not in SUPPORTED:
            raise PolicyRefusal(
                "dp_unsupported",
                f"column '{column.name}': {fn.upper()} cannot be released in the "
                "differential-privacy mode of this agreement",
                article=ARTICLE,
                subject=column.name,
                hint="use COUNT, SUM or AVG",
            )
        if fn in ("sum", "avg"):
            name = arguments.get(i)
            if name is None or name not in bounds:
                raise PolicyRefusal(
                    "dp_unbounded",
                    f"column '{column.name}': the differential-privacy mode needs declared "
                    "bounds for the measure it sums"
                    + (f" ('{name}' has none)" if name else " (an expression has none)"),
                    article=ARTICLE,
                    subject=name or column.name,
                    hint="sum a plain measure column whose bounds the agreement declares",
                )


def _cast(value: float, kind: pa.DataType) -> int | Decimal | float:
    if pa.types.is_integer(kind):
        return int(round(value))
    if pa.types.is_decimal(kind):
        return Decimal(int(round(value))).scaleb(0).quantize(Decimal(1).scaleb(-kind.scale))
    return float(value)


def add_noise(
    result: CheckResult,
    raw: pa.Table,
    spec: OutputSpec,
    epsilon: float,
    generator: np.random.Generator,
    bounds: Mapping[int, Bounds],
) -> CheckResult:
    """``result`` with every released aggregate cell replaced by its noisy value.

    ``bounds`` maps SUM/AVG output positions to the bounds of their argument.
    Suppressed cells stay empty. Raises ValueError for a non-positive epsilon.
    """
    if not epsilon > 0:
        raise ValueError("epsilon must be positive")
    eps_each = epsilon / measurements(spec)
    hidden = {(c.row, c.column) for c in result.cells if c.verdict is CellVerdict.SUPPRESS}
    table = result.released
    for i, column in spec.aggregates():
        if column.role is not OutputRole.AGGREGATE or column.name not in table.column_names:
            continue
        fn = column.function or ""
        n = raw.column(evidence_name("n", i)).to_pylist()
        sums = raw.column(evidence_name("clamped", i)).to_pylist() if fn in ("sum", "avg") else None
        kind = table.column(column.name).type
        values = table.column(column.name).to_pylist()
        for r in range(len(values)):
            if (r, column.name) in hidden or values[r] is None:
                continue
            count = (n[r] or 0) + int(discrete_laplace(1 / eps_each, generator))
            if fn in COUNTS:
                values[r] = _cast(max(count, 0), kind)
                continue
            # refuse_unsupported let through only COUNTS, SUM and AVG, so sums is read here
            assert sums is not None
            b = bounds[i]
            total = round(sums[r] or 0) + int(discrete_laplace(b.sensitivity / eps_each, generator))
            if fn == "sum":
                values[r] = _cast(total, kind)
            else:
                values[r] = _cast(min(max(total / max(count, 1), b.lower), b.upper), kind)
        position = table.column_names.index(column.name)
        table = table.set_column(position, column.name, pa.array(values, type=kind))
    return replace(result, released=table)


# --------------------------------------------------------------------------- budget


@dataclass(frozen=True)
class Budget:
    """An agreement's epsilon for one dataset over its term, and what is spent."""

    total: float
    spent: float
    per_query: float

    @property
    def remaining(self) -> float:
        return max(0.0, self.total - self.spent)

    def refusal(
        self, asked: float | None = None, subject: str | None = None
    ) -> PolicyRefusal | None:
        """Why a job asking ``asked`` epsilon (default: per query) may not run, or None."""
        asked = self.per_query if asked is None else asked
        if asked <= self.remaining + 1e-12:
            return None
        return PolicyRefusal(
            "dp_budget_exhausted",
            f"the privacy budget is exhausted: this job needs epsilon {asked:g} and "
            f"{self.remaining:g} of {self.total:g} remains for the agreement's term",
            article=ARTICLE,
            subject=subject,
            hint="no further differentially private releases are possible on this dataset "
            "under this agreement; ask the authority about a new agreement",
        )
