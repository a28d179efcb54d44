"""The differential-privacy mode: calibrated noise on released cells, and budget arithmetic.

The differencing defence stops a pair (or a small family) of releases from
isolating a few entities; it cannot stop linear reconstruction from many
overlapping releases. Differential privacy bounds what *any* combination of
releases reveals about one entity, at a price counted in epsilon.

Mechanism: the discrete Laplace (two-sided geometric) distribution on
integers, ``P(x) ~ exp(-|x| / scale)``, added by OpenDP's measurement
``make_laplace`` on a vector of 64-bit integers under the L1 distance, sampled
inside OpenDP (its documentation cites the exact sampler of Canonne, Kamath and
Steinke 2020), never by numpy. Integer noise on
integer-rounded values avoids the floating-point attacks on the continuous
Laplace mechanism (Mironov 2012). The platform does not sample: it builds, per
released column, the OpenDP measurement whose privacy map certifies the
column's share of epsilon for the column's L1 sensitivity (:func:`laplace`),
and hands it the true integers.

Per job (entity-level DP, each entity's contribution bounded):

* COUNT cells release the noisy number of contributing **entities** (the
  evidence ``__n_i``), sensitivity 1 per cell;
* SUM cells release the noisy sum of per-entity sums clamped to the bounds
  declared for the measure column (``__clamped_i``), sensitivity
  ``ceil(max(|lo|, |hi|)) + 1`` per cell (the +1 covers rounding the total);
* AVG cells are a noisy clamped sum over a noisy entity count (two measurements).

One entity lies in at most ``rows_per_entity`` rows per grouping set (the L0
bound, 1 unless the caller states more), so one column's L1 sensitivity is
(grouping sets x rows_per_entity x the per-cell sensitivity), and a job's
epsilon is split evenly over the measurements per row (one per COUNT or SUM
column, two per AVG): basic sequential composition across columns, the L1
sensitivity covering the rows within one column.

Each noisy column's noise scale and the half-width of its 95% interval (from
``opendp.accuracy.discrete_laplacian_scale_to_accuracy``: the true value lies
within released +- half-width with probability at least 0.95) travel with the
released table, as the JSON under the key ``dp`` of its Arrow schema metadata
(:func:`released_noise`), and so reach the product's ``output.parquet``.

Known shortcuts (docs/disclosure.md):

* the L0 bound is checked, not declared: the job path calls :func:`add_noise`
  with ``rows_per_entity=1`` (right when group keys are fixed for each entity),
  and a job whose entity evidence (``__entities``, there when the differencing
  defence is on, as it is by default) shows an entity in more rows of one grouping set fails closed
  (``dp_contributions``), e.g. county x month over monthly records. With the
  differencing defence off there is no evidence and the bound is assumed: such
  a table's real epsilon is then up to (rows per entity) times the stated one.
  The check itself reads true data (whether the job is refused), like the
  suppressions; a per-dataset L0 bound declared by the provider would replace it;
* which groups appear, and the threshold rule's suppressions, are decided on
  true values, which is not covered by the DP guarantee (declared public group
  domains would remove that, not built);
* the 95% interval of an AVG cell is not stated (only its sum's and count's);
* pure epsilon-DP with basic composition only (no zCDP / Gaussian noise, which
  would compose better over many releases and suit L0 > 1);
* OpenDP's own documented limitations apply to its samplers.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

import numpy as np
import numpy.typing as npt
import opendp.measurements as dp_measurements
import pyarrow as pa
from opendp.accuracy import discrete_laplacian_scale_to_accuracy
from opendp.domains import atom_domain, vector_domain
from opendp.metrics import l1_distance
from opendp.mod import Measurement, enable_features
from opendp.mod import __version__ as OPENDP_VERSION
from pyroaring import BitMap

from .disclosure import COUNTS, CellVerdict, CheckResult, OutputVerdict
from .domains import canonical
from .errors import PolicyRefusal
from .outputs import EVIDENCE_PREFIX, OutputRole, OutputSpec, evidence_name, grouping_mask

ARTICLE = "Art. 15"
SUPPORTED = COUNTS | {"sum", "avg"}
CONFIDENCE = 0.95
MECHANISM = f"discrete Laplace (OpenDP {OPENDP_VERSION} make_laplace on i64, L1)"
METADATA_KEY = b"dp"

enable_features("contrib")  # make_laplace is in OpenDP's "contrib" set


def _space() -> tuple[Any, Any]:
    return vector_domain(atom_domain(T="i64")), l1_distance(T="i64")


def laplace(sensitivity: int, epsilon: float) -> tuple[Measurement, float]:
    """OpenDP's discrete Laplace measurement on a vector of i64, and its noise scale.

    The scale is ``sensitivity / epsilon``, raised by the last bits needed for
    OpenDP's own privacy map to certify at most ``epsilon`` for a vector that
    moves by ``sensitivity`` in the L1 distance (the map rounds conservatively).
    """
    if not epsilon > 0:
        raise ValueError("epsilon must be positive")
    if sensitivity < 1:
        raise ValueError("the sensitivity must be a positive integer")
    scale = sensitivity / epsilon
    for _ in range(64):
        measurement = dp_measurements.make_laplace(*_space(), scale=scale)
        certify: Any = measurement.map  # OpenDP's privacy map (untyped in its stubs)
        if certify(sensitivity) <= epsilon:
            return measurement, scale
        scale = math.nextafter(scale, math.inf)
    raise ValueError(
        f"OpenDP certifies no scale near {sensitivity / epsilon} for epsilon {epsilon}"
    )


def discrete_laplace(scale: float, size: int) -> npt.NDArray[np.int64]:
    """``size`` draws of the discrete Laplace distribution ``P(x) ~ exp(-|x|/scale)``,
    sampled by OpenDP (noise added to zeros). Variance ``2 q / (1 - q)^2``, ``q = exp(-1/scale)``.
    """
    if not scale > 0:
        raise ValueError("scale must be positive")
    measurement = dp_measurements.make_laplace(*_space(), scale=scale)
    return np.asarray(measurement([0] * size), dtype=np.int64)


def discrete_laplace_variance(scale: float) -> float:
    q = math.exp(-1.0 / scale)
    return 2 * q / (1 - q) ** 2


def half_width(scale: float, confidence: float = CONFIDENCE) -> int:
    """The integer ``h`` with ``P(|noise| <= h) >= confidence`` for the discrete Laplace
    of ``scale`` (OpenDP's accuracy helper; its float may be floored, the noise is integer)."""
    accuracy = discrete_laplacian_scale_to_accuracy(
        scale=float(scale), alpha=float(1 - confidence), T="f64"
    )
    return math.floor(float(accuracy))


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


def per_row(spec: OutputSpec) -> int:
    """How many noisy measurements one row carries (COUNT and SUM one, AVG two)."""
    return max(1, sum(2 if c.function == "avg" else 1 for _, c in spec.aggregates()))


def measurements(spec: OutputSpec) -> int:
    """How many noisy measurements one entity's data enters in one job (one row per set)."""
    return per_row(spec) * max(1, len(spec.grouping_sets))


@dataclass(frozen=True)
class Noise:
    """One noisy measurement of one column: OpenDP's measurement and what it states."""

    quantity: str  # "count" or "sum"
    epsilon: float  # this measurement's share of the job's epsilon
    cell_sensitivity: int  # how far one entity moves one cell
    sensitivity: int  # how far one entity moves the whole column (L1)
    scale: float
    measurement: Measurement

    def describe(self) -> dict[str, Any]:
        return {
            "quantity": self.quantity,
            "epsilon": self.epsilon,
            "cell_sensitivity": self.cell_sensitivity,
            "l1_sensitivity": self.sensitivity,
            "scale": self.scale,
            "half_width_95": half_width(self.scale),
        }


def plan(
    spec: OutputSpec, epsilon: float, bounds: Mapping[int, Bounds], rows_per_entity: int = 1
) -> dict[int, tuple[Noise, ...]]:
    """Per SUM/COUNT/AVG output position, its measurements (AVG: count, then sum).

    ``epsilon`` is the job's; ``rows_per_entity`` the L0 bound per grouping set.
    Raises ValueError for a non-positive epsilon or L0 bound.
    """
    if not epsilon > 0:
        raise ValueError("epsilon must be positive")
    if rows_per_entity < 1:
        raise ValueError("rows_per_entity must be at least 1")
    eps = epsilon / per_row(spec)
    cells = max(1, len(spec.grouping_sets)) * rows_per_entity  # rows one entity moves
    out: dict[int, tuple[Noise, ...]] = {}
    for i, column in spec.aggregates():
        fn = column.function or ""
        parts = []
        if fn in COUNTS or fn == "avg":
            measurement, scale = laplace(cells, eps)
            parts.append(Noise("count", eps, 1, cells, scale, measurement))
        if fn in ("sum", "avg"):
            cell = bounds[i].sensitivity
            measurement, scale = laplace(cells * cell, eps)
            parts.append(Noise("sum", eps, cell, cells * cell, scale, measurement))
        out[i] = tuple(parts)
    return out


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


ENTITIES = evidence_name("entities")  # jobs.sql_evidence.ENTITIES: each row's entity numbers
GROUPING = evidence_name("grouping")


def _numbers(value: object) -> npt.NDArray[np.uint32]:
    """One row's entity numbers: a serialized roaring bitmap (folded) or a list."""
    if isinstance(value, bytes):
        return np.asarray(BitMap.deserialize(value).to_array(), dtype=np.uint32)
    return np.asarray(value, dtype=np.uint32)


def rows_per_entity_seen(raw: pa.Table) -> int | None:
    """The most rows of one grouping set that one entity lies in, read from the
    ``__entities`` evidence (present when the differencing defence is on), or None."""
    if ENTITIES not in raw.column_names:
        return None
    rows = raw.column(ENTITIES).to_pylist()
    sets = raw.column(GROUPING).to_pylist() if GROUPING in raw.column_names else [0] * len(rows)
    by_set: dict[object, list[npt.NDArray[np.uint32]]] = {}
    for value, grouping in zip(rows, sets, strict=True):
        if value is not None:
            by_set.setdefault(grouping, []).append(_numbers(value))
    most = 0
    for parts in by_set.values():
        numbers = np.concatenate(parts)
        if numbers.size:
            most = max(most, int(np.unique(numbers, return_counts=True)[1].max()))
    return most


def refuse_over_l0(raw: pa.Table, rows_per_entity: int) -> None:
    """Refuse (fail closed) a release whose evidence shows an entity in more rows of one
    grouping set than the noise was scaled for: its epsilon would be understated."""
    seen = rows_per_entity_seen(raw)
    if seen is not None and seen > rows_per_entity:
        raise PolicyRefusal(
            "dp_contributions",
            f"an entity lies in more than {rows_per_entity} row(s) of one grouping set, "
            "so the differential-privacy noise would be too small for the stated epsilon; "
            "nothing is released and no budget is spent",
            article=ARTICLE,
            hint="group by keys that are fixed for each entity (county, sex), not by keys "
            "that vary within one (month, date)",
        )


def _noisy(noise: Noise, values: list[int]) -> list[int]:
    return [int(v) for v in noise.measurement(values)] if values else []


def add_noise(
    result: CheckResult,
    raw: pa.Table,
    spec: OutputSpec,
    epsilon: float,
    bounds: Mapping[int, Bounds],
    rows_per_entity: int = 1,
) -> CheckResult:
    """``result`` with every released aggregate cell replaced by its noisy value.

    ``bounds`` maps SUM/AVG output positions to the bounds of their argument;
    ``rows_per_entity`` is the L0 bound (see the module's shortcuts). Suppressed
    cells stay empty. Each noisy column's noise (scale, 95% half-width, epsilon)
    is written under ``dp`` in the released table's schema metadata. Raises
    ValueError for a non-positive epsilon, and PolicyRefusal ``dp_contributions``
    when the entity evidence, if present, shows more rows per entity than allowed.
    """
    noises = plan(spec, epsilon, bounds, rows_per_entity)
    refuse_over_l0(raw, rows_per_entity)
    hidden = {(c.row, c.column) for c in result.cells if c.verdict is CellVerdict.SUPPRESS}
    table = result.released
    stated: dict[str, Any] = {}
    for i, column in spec.aggregates():
        if column.role is not OutputRole.AGGREGATE or column.name not in table.column_names:
            continue
        fn = column.function or ""
        kind = table.column(column.name).type
        values = table.column(column.name).to_pylist()
        # every cell not suppressed, empty ones too: which cells get a value may not
        # depend on the data (an empty SUM on the declared grid is a noisy 0)
        rows = [r for r in range(len(values)) if (r, column.name) not in hidden]
        n = raw.column(evidence_name("n", i)).to_pylist()
        counts = sums = None
        for noise in noises[i]:
            if noise.quantity == "count":
                counts = _noisy(noise, [int(n[r] or 0) for r in rows])
            else:
                clamped = raw.column(evidence_name("clamped", i)).to_pylist()
                sums = _noisy(noise, [int(round(clamped[r] or 0)) for r in rows])
        for k, r in enumerate(rows):
            if fn in COUNTS:
                assert counts is not None
                values[r] = _cast(max(counts[k], 0), kind)
            elif fn == "sum":
                assert sums is not None
                values[r] = _cast(sums[k], kind)
            else:  # refuse_unsupported let through only COUNTS, SUM and AVG
                assert counts is not None and sums is not None
                b = bounds[i]
                values[r] = _cast(min(max(sums[k] / max(counts[k], 1), b.lower), b.upper), kind)
        position = table.column_names.index(column.name)
        table = table.set_column(position, column.name, pa.array(values, type=kind))
        parts = [noise.describe() for noise in noises[i]]
        stated[column.name] = {
            "function": fn,
            "epsilon": sum(p["epsilon"] for p in parts),
            "noisy_cells": len(rows),
            **(
                {"scale": parts[0]["scale"], "half_width_95": parts[0]["half_width_95"]}
                if len(parts) == 1
                else {"half_width_95": None}  # a ratio: see the count's and the sum's
            ),
            "measurements": parts,
        }
    section = {
        "mechanism": MECHANISM,
        "epsilon": epsilon,
        "rows_per_entity": rows_per_entity,
        "grouping_sets": max(1, len(spec.grouping_sets)),
        "confidence": CONFIDENCE,
        "interval": "released value +- half_width_95 holds the true value (a SUM: its "
        "clamped, rounded total; a COUNT: its number of entities) with probability >= 0.95",
        "columns": stated,
    }
    metadata = dict(table.schema.metadata or {})
    metadata[METADATA_KEY] = json.dumps(section, sort_keys=True).encode()
    return replace(result, released=table.replace_schema_metadata(metadata))


def released_noise(table: pa.Table) -> dict[str, Any] | None:
    """The ``dp`` section :func:`add_noise` wrote into a released table, or None."""
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        return None
    section: dict[str, Any] = json.loads(raw)
    return section


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


def release_on_grid(
    raw: pa.Table, spec: OutputSpec, grid: Mapping[str, tuple[Any, ...]] | None, params: Any
) -> tuple[pa.Table, CheckResult]:
    """The DP mode's output before noise: every row of the declared grid, judged by nothing.

    No check on a DP output reads true values (issue 18): no threshold, dominance or
    differencing suppression decides which cells appear, and a row whose key is not a
    declared code (a NULL or a value outside the list, present only because the data
    holds it) is dropped, so the rows released are the declared grid's whatever the data
    holds. Returns the rows kept (with their evidence, for the noise) and a result that
    releases every aggregate cell of them.
    """

    if grid is not None and raw.num_rows:
        allowed = {k: {canonical(v) for v in values} for k, values in grid.items()}
        masks = (
            raw.column("__grouping").to_pylist()
            if "__grouping" in raw.column_names
            else [0] * raw.num_rows
        )
        sets = {grouping_mask(spec, s): set(s) for s in spec.grouping_sets}
        columns = {k: raw.column(k).to_pylist() for k in spec.group_keys}
        keep = [
            all(
                canonical(columns[k][r]) in allowed[k]
                for k in sets.get(masks[r], set(spec.group_keys))
                if k in allowed
            )
            for r in range(raw.num_rows)
        ]
        raw = raw.filter(pa.array(keep, type=pa.bool_()))
    visible = [n for n in raw.column_names if not n.startswith(EVIDENCE_PREFIX)]
    released = raw.select(visible)
    cells = raw.num_rows * len(list(spec.aggregates()))
    counts = {"cells": cells, "suppressed": 0, "review": 0, "rounded": 0}
    return raw, CheckResult(OutputVerdict.RELEASED, released, (), counts, params)
