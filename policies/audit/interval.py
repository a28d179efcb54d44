"""The interval audit of a lineage's hypercube, and a secondary pattern that passes it.

The release rules (docs/disclosure.md, "Interval audit") ask to show, before anything
leaves, that no protected (suppressed) cell can be narrowed below its protection interval. A :class:`Hypercube`
cell has a code or :data:`TOTAL` per declared dimension; a cell with a total on one
dimension is the sum of its children along it, for all combinations, whichever
grouping sets were released. An attacker knows the released values and that every
cell is at least ``lower_bound`` (0 for counts and sums without declared negatives).

**Audit**: a cell is the sum of its interior (finest) descendants, and any interior
values define margins meeting every relation. So the unknowns are the unreleased
interior cells, a released margin is one equation (its unknown descendants sum to its
value less its released ones), an unreleased one adds nothing. Per protected cell two
linear programs (HiGHS via :func:`scipy.optimize.milp`; the continuous relaxation, as
in tau-argus) give its least and greatest value, which must reach ``value - lower``
(not below its own bound) and ``value + upper`` protection: a share of the value, at
least ``minimum`` (a zero needs ``minimum`` above it), or ``levels`` per cell. A cell
found at a bound it cannot pass (its unknowns' least sum; an equation's value less its
other unknowns' least) in another program's optimum has that end without a program.

**Incremental** (``previous``, same hypercube and parameters): an equation links its
unknowns (a protected margin its own); a range depends only on its component's
equations. An unknown is *touched* when it changed, or shares an equation, old or new,
with a changed cell (status or value) or a margin over a changed interior cell.
Soundness: let C be a new component with no touched unknown and no protected cell that
is new, changed value or requirement, or lies over a changed cell. Each equation, old
or new, holding a cell of C was released before and after with no changed descendant
(else that cell is touched): same unknowns and right-hand side; C's cells were unknown
before. So C is closed under the old equations too: same programs, ranges reused.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ..domains import Classification, Code, ColumnRef, declared_values, domain_of
from ..errors import ClassificationError

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


TOTAL = None  # a rolled-up dimension: no declared code is null
Cell = tuple[Code | None, ...]
Values = Mapping[Cell, float]
Levels = Mapping[Cell, tuple[float, float]]  # per cell: (lower, upper) protection
Needs = dict[int, tuple[float, float, float]]  # protected flat -> value, need_low, need_high


@dataclass(frozen=True)
class Hypercube:
    """Declared dimensions and their codes; position ``len(codes[i])`` is the total."""

    dimensions: tuple[str, ...]
    codes: tuple[tuple[Code, ...], ...]
    shape: tuple[int, ...] = field(init=False, repr=False, compare=False)  # codes + 1 each
    _position: tuple[dict[Code | None, int], ...] = field(init=False, repr=False, compare=False)
    _seen: dict[Cell, int] = field(init=False, repr=False, compare=False, default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.dimensions) != len(self.codes) or not self.dimensions:
            raise ValueError("a hypercube needs one code list per dimension, and a dimension")
        position = tuple({code: i for i, code in enumerate(cs)} for cs in self.codes)
        if any(len(p) != len(cs) or not cs for p, cs in zip(position, self.codes, strict=True)):
            raise ValueError("every dimension needs distinct codes, at least one")
        object.__setattr__(self, "shape", tuple(len(cs) + 1 for cs in self.codes))
        object.__setattr__(self, "_position", tuple({**p, None: len(p)} for p in position))

    @classmethod
    def from_domains(
        cls, columns: Sequence[ColumnRef], classifications: Mapping[str, Classification]
    ) -> Hypercube:
        """The hypercube over ``columns``' declared domains (named by column)."""
        domains = [(c, domain_of(c, classifications)) for c in columns]
        for (dataset, column), domain in domains:
            if domain is None:
                raise ClassificationError(f"column '{dataset}.{column}' has no declared domain")
        codes = tuple(tuple(declared_values(d)) for _, d in domains if d is not None)
        return cls(tuple(c for _, c in columns), codes)

    def index(self, cell: Cell) -> int:
        if (known := self._seen.get(cell)) is not None:
            return known
        flat = 0  # (zip's strict raises ValueError for a cell of another length)
        for code, size, position in zip(cell, self.shape, self._position, strict=True):
            if (at := position.get(code)) is None:
                raise ValueError(f"code {code!r} of cell {cell!r} is not declared")
            flat = flat * size + at
        self._seen[cell] = flat
        return flat

    def cell(self, flat: int) -> Cell:
        found: list[Code | None] = []
        for codes, size in zip(reversed(self.codes), reversed(self.shape), strict=True):
            flat, at = divmod(flat, size)
            found.append(TOTAL if at == size - 1 else codes[at])
        return tuple(reversed(found))

    def relations(self, cell: Cell) -> list[tuple[Cell, tuple[Cell, ...]]]:
        """The relations holding ``cell``, one per dimension: (parent, its children)."""
        found = []
        for i, code in enumerate(cell):
            parent = cell if code is TOTAL else (*cell[:i], TOTAL, *cell[i + 1 :])
            children = tuple((*parent[:i], c, *parent[i + 1 :]) for c in self.codes[i])
            found.append((parent, children))
        return found

    def grouping_set(self, keys: Iterable[str]) -> list[Cell]:
        """The cells of one grouping set: every code of ``keys``, totals elsewhere."""
        wanted = set(keys)
        pairs = zip(self.dimensions, self.codes, strict=True)
        choices = [cs if d in wanted else (TOTAL,) for d, cs in pairs]
        return list(itertools.product(*choices))


def cost_key(hypercube: Hypercube, cell: Cell) -> tuple[int, int]:
    """The order cells are chosen in: finest level first, then declared order. No values."""
    return sum(1 for c in cell if c is TOTAL), hypercube.index(cell)


# The protection interval of a suppressed cell in a job's table (docs/disclosure.md,
# "Interval audit"), until DisclosureParams carries them: tau-argus asks an interval of
# a share of the value on each side (its "protection levels"), with an absolute minimum.
# policies.disclosure.tables widens the share for sums to what the p% and (n, k) rules
# in force need, and for counts asks that the attacker cannot tell the cell is below
# the threshold (its upper end reaches ``min_entities``).
PROTECTION_SHARE = 0.10
PROTECTION_MINIMUM = 1.0


@dataclass(frozen=True)
class AuditParams:
    """Protection required of a suppressed cell, and what an attacker knows a priori."""

    lower_share: float = 0.10
    upper_share: float = 0.10
    minimum: float = 1.0  # absolute protection on each side, also for zeros
    lower_bound: float | None = 0.0  # every cell is at least this; None: negatives declared
    tolerance: float = 1e-6
    # True: a cell's end is not solved for once another program's optimum shows it can
    # reach its need (its low or high is then that value, not the extreme): the same
    # verdicts, fewer programs. The job path's check asks only for the verdicts.
    witness: bool = False

    def __post_init__(self) -> None:
        if min(self.lower_share, self.upper_share, self.minimum, self.lower_bound or 0) < 0:
            raise ValueError("shares, minimum and lower_bound (None: unbounded) must be >= 0")


@dataclass(frozen=True)
class CellAudit:
    """A protected cell: the attacker's range [low, high] and the interval it must reach."""

    cell: Cell
    value: float
    low: float
    high: float
    need_low: float
    need_high: float
    narrowed: bool


@dataclass(frozen=True)
class AuditResult:
    hypercube: Hypercube
    params: AuditParams
    cells: dict[Cell, CellAudit]
    solved: int  # linear programs run
    reused: int  # protected cells whose range came from ``previous``
    _values: FloatArray = field(repr=False, compare=False)  # released values, NaN elsewhere
    _needs: Needs = field(repr=False, compare=False)
    _unknown: FloatArray = field(repr=False, compare=False)  # per cell: unknown interior cells

    @property
    def narrowed(self) -> tuple[Cell, ...]:
        found = [c for c, a in self.cells.items() if a.narrowed]
        return tuple(sorted(found, key=lambda c: cost_key(self.hypercube, c)))

    @property
    def passed(self) -> bool:
        return not self.narrowed


@dataclass
class _System:
    variables: IntArray  # flat index of each unknown interior cell, ascending
    ancestors: IntArray  # (subsets, variables): flat index of each variable's margins
    matrix: csr_matrix  # equations x variables
    rhs: FloatArray
    objectives: dict[int, tuple[IntArray, float]]  # protected flat -> (its variables, constant)
    component: IntArray  # per variable
    unknown: FloatArray  # per cell: how many of its interior descendants are unknown


def _subsets(d: int) -> list[list[int]]:
    return [[i for i in range(d) if mask >> i & 1] for mask in range(1, 1 << d)]


def _known_sums(shape: tuple[int, ...], values: FloatArray) -> tuple[FloatArray, FloatArray]:
    """Per cell: the sum of its released interior descendants, and how many are unknown."""
    interior = values.reshape(shape)[tuple(slice(0, n - 1) for n in shape)]
    known = np.nan_to_num(interior, nan=0.0)
    unknown = np.isnan(interior).astype(np.float64)
    sums, counts = np.zeros(shape), np.zeros(shape)
    for subset in [[], *_subsets(len(shape))]:
        at = tuple(slice(n - 1, n) if i in subset else slice(0, n - 1) for i, n in enumerate(shape))
        sums[at] = known.sum(axis=tuple(subset), keepdims=True)
        counts[at] = unknown.sum(axis=tuple(subset), keepdims=True)
    return sums.ravel(), counts.ravel()


def _margins(shape: tuple[int, ...]) -> BoolArray:
    margin = np.ones(shape, dtype=bool)
    margin[tuple(slice(0, n - 1) for n in shape)] = False
    return margin.ravel()


def _ancestors(shape: tuple[int, ...], flats: IntArray) -> IntArray:
    """(subsets, cells): the flat index of every margin over each interior cell."""
    coords = np.array(np.unravel_index(flats, shape), dtype=np.int64).reshape(len(shape), -1)
    top = np.array(shape, dtype=np.int64)[:, None] - 1
    subsets = _subsets(len(shape))
    found = np.empty((len(subsets), coords.shape[1]), dtype=np.int64)
    for s, subset in enumerate(subsets):
        moved = coords.copy()
        moved[subset] = top[subset]
        found[s] = np.ravel_multi_index(tuple(moved), shape)
    return found


def _build(hc: Hypercube, values: FloatArray, protected: Sequence[int], tol: float) -> _System:
    # SciPy is imported where a table is audited (here and in _solve), not with the
    # module: half a second that every command loading the disclosure rules would pay.
    from scipy.sparse import coo_matrix, csr_matrix
    from scipy.sparse.csgraph import connected_components

    shape = hc.shape
    sums, counts = _known_sums(shape, values)
    released, margin = ~np.isnan(values), _margins(shape)
    known = np.nan_to_num(values)
    off = released & margin & (counts == 0) & (np.abs(known - sums) > tol * (1 + np.abs(known)))
    if off.any():
        bad = hc.cell(int(np.argmax(off)))
        raise ValueError(f"released margin {bad!r} is not the sum of its cells")
    variables = np.flatnonzero(~released & ~margin).astype(np.int64)
    ancestors = _ancestors(shape, variables)
    where = released[ancestors]
    rows, row_of = np.unique(ancestors[where], return_inverse=True)
    columns = np.broadcast_to(np.arange(len(variables)), ancestors.shape)[where]
    matrix = csr_matrix((np.ones(len(columns)), (row_of, columns)), (len(rows), len(variables)))
    objectives: dict[int, tuple[IntArray, float]] = {}
    for flat in sorted(protected):
        if margin[flat]:
            own = np.flatnonzero((ancestors == flat).any(axis=0)).astype(np.int64)
            objectives[flat] = (own, float(sums[flat]))
        else:
            objectives[flat] = (np.searchsorted(variables, [flat]).astype(np.int64), 0.0)
    # the graph: variable -- equation, and variable -- protected margin over it
    edges = [(row_of, columns)]
    edges += [(np.full(len(o[0]), len(rows) + k), o[0]) for k, o in enumerate(objectives.values())]
    ends = [np.concatenate(e) for e in zip(*edges, strict=True)]
    nodes = len(variables) + len(rows) + len(objectives)
    graph = coo_matrix((np.ones(len(ends[0])), (ends[1], len(variables) + ends[0])), (nodes,) * 2)
    labels = np.asarray(connected_components(graph, directed=False)[1], dtype=np.int64)
    rhs = values[rows] - sums[rows]
    return _System(variables, ancestors, matrix, rhs, objectives, labels[: len(variables)], counts)


def _solve(
    system: _System,
    members: IntArray,
    rows: IntArray,
    flats: list[int],
    params: AuditParams,
    needs: Needs,
) -> tuple[dict[int, tuple[float, float]], int]:
    """Least and greatest value of each protected cell of one component; programs run.
    With ``params.witness``, an end another optimum already shows past its need."""
    from scipy.optimize import Bounds, LinearConstraint, milp  # imported here: see _build
    from scipy.sparse import csc_array, csr_matrix

    tol, lower = params.tolerance, params.lower_bound
    local = [np.searchsorted(members, system.objectives[f][0]) for f in flats]
    const = np.array([system.objectives[f][1] for f in flats])
    floor = np.array([len(m) for m in local]) * (-math.inf if lower is None else lower)
    if not len(rows):  # no equation: each unknown is free above its bound
        return {f: (const[k] + floor[k], math.inf) for k, f in enumerate(flats)}, 0
    at = (np.repeat(np.arange(len(flats)), list(map(len, local))), np.concatenate(local))
    pick = csr_matrix((np.ones(len(at[0])), at), shape=(len(flats), len(members)))
    matrix, rhs = csc_array(system.matrix[rows][:, members]), system.rhs[rows]
    ceiling = _ceilings(matrix, rhs, local, lower)
    slack = [tol * (1 + np.abs(np.where(np.isfinite(b), b, 0.0))) for b in (floor, ceiling)]
    equations = LinearConstraint(matrix, rhs, rhs)
    bounds = Bounds(-math.inf if lower is None else lower, math.inf)
    low, high = np.full(len(flats), math.nan), np.full(len(flats), math.nan)
    witness = None
    if params.witness:
        wanted = np.array([needs[f][1:] for f in flats]).reshape(-1, 2).T
        witness = (wanted[0], wanted[1])
    runs = 0
    for k in range(len(flats)):
        for sense, found in ((-1.0, high), (1.0, low)):  # the greatest first
            if not math.isnan(found[k]):
                continue
            objective = np.zeros(len(members))
            objective[local[k]] = sense
            result = milp(objective, constraints=equations, bounds=bounds)
            runs += 1
            if result.status == 4:  # HiGHS may not tell unbounded from infeasible
                feasible = milp(np.zeros(len(members)), constraints=equations, bounds=bounds)
                result.status = 3 if feasible.status == 0 else 2
            if result.status == 0:
                # a feasible point: a cell at a bound it cannot pass has that end (module doc)
                value = pick @ result.x
                seen = np.isnan(low) & (value <= floor + slack[0])
                low[seen] = floor[seen]
                seen = np.isnan(high) & (value >= ceiling - slack[1])
                high[seen] = ceiling[seen]
                if witness is not None:
                    reach = value + const  # each cell's value at this optimum
                    seen = np.isnan(low) & (reach <= witness[0])
                    low[seen] = reach[seen] - const[seen]
                    seen = np.isnan(high) & (reach >= witness[1])
                    high[seen] = reach[seen] - const[seen]
                found[k] = sense * float(result.fun)
            elif result.status == 3:
                found[k] = -sense * math.inf
            else:
                raise ValueError("the released values admit no solution: they are inconsistent")
    return {f: (const[k] + low[k], const[k] + high[k]) for k, f in enumerate(flats)}, runs


def _ceilings(matrix: Any, rhs: FloatArray, local: list[IntArray], low: float | None) -> FloatArray:
    """Per interior cell, the least over its equations of the value less its other unknowns'."""
    found = np.full(len(local), math.inf)
    if low is None:
        return found
    width = np.bincount(matrix.indices, minlength=len(rhs))  # unknowns per equation
    for k, own in enumerate(local):
        if len(own) == 1:
            rows = matrix.indices[matrix.indptr[own[0]] : matrix.indptr[own[0] + 1]]
            if len(rows):
                found[k] = float(np.min(rhs[rows] - low * (width[rows] - 1)))
    return found


def _state(
    hc: Hypercube,
    cells: tuple[Collection[Cell], Collection[Cell]],
    true_values: Values,
    params: AuditParams,
    levels: Levels,
) -> tuple[FloatArray, Needs]:
    """Released values (NaN elsewhere) and, per protected cell, (value, need_low, need_high)."""
    (released, protected), values = cells, np.full(math.prod(hc.shape), math.nan)
    for cell in released:
        values[hc.index(cell)] = float(true_values[cell])
    needs = {}
    for cell in protected:
        flat = hc.index(cell)
        if not math.isnan(values[flat]):
            raise ValueError(f"cell {cell!r} is both released and protected")
        value = float(true_values[cell])
        shares = (params.lower_share, params.upper_share)
        down, up = levels.get(cell) or [max(params.minimum, s * abs(value)) for s in shares]
        need_low = value - down
        if params.lower_bound is not None:  # times the interior cells it sums
            under = math.prod(len(cs) for c, cs in zip(cell, hc.codes, strict=True) if c is TOTAL)
            need_low = max(need_low, params.lower_bound * under)
        needs[flat] = (value, need_low, value + up)
    return values, needs


def _touched(
    hc: Hypercube, system: _System, values: FloatArray, needs: Needs, previous: AuditResult
) -> set[int]:
    """The components to solve again after ``previous`` (see the module's docstring)."""
    old = previous._values
    known_old, known_new = ~np.isnan(old), ~np.isnan(values)
    changed = (known_old != known_new) | (known_old & known_new & (old != values))
    margin = _margins(hc.shape)
    mark = np.zeros(len(values), dtype=bool)  # margins over a changed interior cell
    mark[_ancestors(hc.shape, np.flatnonzero(changed & ~margin)).ravel()] = True
    hot = (changed & margin) | (mark & (known_old | known_new))
    touched = changed[system.variables] | hot[system.ancestors].any(axis=0)
    found = set(np.unique(system.component[touched]).tolist())
    for flat, (own, _) in system.objectives.items():
        if len(own) and (needs[flat] != previous._needs.get(flat) or mark[flat]):
            found.add(int(system.component[own[0]]))
    return found


def audit(
    hypercube: Hypercube,
    released: Collection[Cell],
    protected: Collection[Cell],
    true_values: Values,
    params: AuditParams | None = None,
    *,
    levels: Levels | None = None,
    previous: AuditResult | None = None,
) -> AuditResult:
    """The attacker's range of every protected cell, and which are narrowed below their
    interval; cells neither released nor protected are unknown. ``previous``: an earlier
    audit of the same lineage, reused where nothing changed (see the module's doc)."""
    params = params or AuditParams()
    values, needs = _state(hypercube, (released, protected), true_values, params, levels or {})
    system = _build(hypercube, values, list(needs), params.tolerance)
    if previous is not None and (previous.hypercube, previous.params) != (hypercube, params):
        previous = None
    redo = None if previous is None else _touched(hypercube, system, values, needs, previous)
    ranges: dict[int, tuple[float, float]] = {}
    by_component: dict[int, list[int]] = {}
    for flat, (own, const) in system.objectives.items():
        if len(own):
            by_component.setdefault(int(system.component[own[0]]), []).append(flat)
        else:  # every cell under it is released: determined
            ranges[flat] = (const, const)
    members = _groups(system.component)
    equations = _groups(system.component[system.matrix.indices[system.matrix.indptr[:-1]]])
    runs = reused = 0
    for component, flats in sorted(by_component.items()):
        if previous is not None and redo is not None and component not in redo:
            old = [previous.cells[hypercube.cell(f)] for f in flats]
            ranges.update({f: (a.low, a.high) for f, a in zip(flats, old, strict=True)})
            reused += len(flats)
            continue
        rows = equations.get(component, np.zeros(0, dtype=np.int64))
        solved, n = _solve(system, members[component], rows, flats, params, needs)
        ranges.update(solved)
        runs += n
    found: dict[Cell, CellAudit] = {}
    for flat, (value, need_low, need_high) in sorted(needs.items()):
        (low, high), slack = ranges[flat], params.tolerance * (1 + abs(value))
        narrowed = bool(low > need_low + slack or high < need_high - slack)
        cell = hypercube.cell(flat)
        found[cell] = CellAudit(cell, value, float(low), float(high), need_low, need_high, narrowed)
    return AuditResult(hypercube, params, found, runs, reused, values, needs, system.unknown)


def _groups(labels: IntArray) -> dict[int, IntArray]:
    if not len(labels):
        return {}
    order = np.argsort(labels, kind="stable")
    keys, starts = np.unique(labels[order], return_index=True)
    return dict(zip(keys.tolist(), np.split(order, starts[1:]), strict=True))
