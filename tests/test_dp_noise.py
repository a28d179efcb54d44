"""The DP mode's noise comes from OpenDP, at the stated scale, and says so.

No test here seeds anything: OpenDP draws its own randomness, so every check is
statistical, with tolerances many standard errors wide that a wrong scale (a few
per cent off), a constant or a repeated draw would still fail.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from policies.disclosure import CheckResult, DisclosureParams, OutputVerdict
from policies.dp import (
    Bounds,
    add_noise,
    discrete_laplace,
    discrete_laplace_variance,
    half_width,
    laplace,
    plan,
    released_noise,
)
from policies.outputs import OutputColumn, OutputRole, OutputSpec

COUNT_AND_SUM = OutputSpec(
    columns=(
        OutputColumn("n", OutputRole.AGGREGATE, "count_star"),
        OutputColumn("s", OutputRole.AGGREGATE, "sum"),
    )
)


def _one_row(n: int = 100, total: float = 5000.0) -> tuple[CheckResult, pa.Table]:
    released = pa.table({"n": [n], "s": [1e9]})
    raw = pa.table({"__n_0": [n], "__n_1": [n], "__clamped_1": [total]})
    return CheckResult(OutputVerdict.RELEASED, released, (), {}, DisclosureParams()), raw


@pytest.mark.parametrize("scale", [0.5, 4.0, 50.0])
def test_opendp_draws_have_mean_zero_and_the_stated_variance(scale):
    draws = discrete_laplace(scale, 100_000)
    assert draws.dtype == np.int64
    variance = discrete_laplace_variance(scale)
    assert abs(draws.mean()) < 5 * math.sqrt(variance / draws.size)
    # the sample variance's relative standard error is sqrt(5 / n) ~ 0.007 here
    assert abs(draws.var() / variance - 1) < 0.05


def test_the_noise_differs_between_two_runs():
    first, second = discrete_laplace(10.0, 1_000), discrete_laplace(10.0, 1_000)
    assert not np.array_equal(first, second)
    assert len(set(first.tolist())) > 20  # not a constant either


def test_the_95_percent_half_width_covers_95_percent_of_the_noise():
    for scale in (2.0, 4.0, 40.0):
        h = half_width(scale)
        draws = discrete_laplace(scale, 100_000)
        covered = float(np.mean(np.abs(draws) <= h))
        # exact coverage is 1 - 2 q^(h+1) / (1 + q): at least 0.95, and not much more
        q = math.exp(-1 / scale)
        exact = 1 - 2 * q ** (h + 1) / (1 + q)
        assert 0.95 <= exact < 0.97
        assert abs(covered - exact) < 0.004  # ~6 standard errors


def test_opendp_certifies_each_measurement_at_its_share_of_epsilon():
    spec = OutputSpec(
        columns=(
            OutputColumn("n", OutputRole.AGGREGATE, "count_star"),
            OutputColumn("a", OutputRole.AGGREGATE, "avg"),
        ),
        grouping_sets=(("county",), ()),
    )
    noises = plan(spec, 0.9, {1: Bounds(-3.5, 100)}, rows_per_entity=12)
    # three measurements per row (COUNT, AVG's count and sum): 0.3 each
    flat = [noise for parts in noises.values() for noise in parts]
    assert [n.quantity for n in flat] == ["count", "count", "sum"]
    for noise in flat:
        assert noise.epsilon == pytest.approx(0.3)
        # two grouping sets x 12 rows per entity x the per-cell sensitivity
        assert noise.sensitivity == 2 * 12 * noise.cell_sensitivity
        assert noise.measurement.map(noise.sensitivity) <= noise.epsilon
        assert noise.scale == pytest.approx(noise.sensitivity / noise.epsilon, rel=1e-12)
    assert flat[2].cell_sensitivity == 101
    with pytest.raises(ValueError):
        laplace(1, 0.0)


def test_add_noise_is_unbiased_integer_and_clamps_sums_to_the_declared_bounds():
    result, raw = _one_row()
    ns, ss = [], []
    for _ in range(3000):
        noisy = add_noise(result, raw, COUNT_AND_SUM, 1.0, {1: Bounds(0, 100)}).released
        ns.append(noisy.column("n")[0].as_py())
        ss.append(noisy.column("s")[0].as_py())
    assert all(isinstance(n, int) for n in ns)
    assert all(float(s).is_integer() for s in ss)  # a rounded total plus integer noise
    # epsilon 1 split over two measurements: scales 2 (count) and 2 * 101 (sum).
    assert abs(np.mean(ns) - 100) < 5 * math.sqrt(discrete_laplace_variance(2) / len(ns))
    assert abs(np.var(ns) / discrete_laplace_variance(2) - 1) < 0.15
    assert abs(np.mean(ss) - 5000) < 5 * math.sqrt(discrete_laplace_variance(202) / len(ss))
    assert abs(np.var(ss) / discrete_laplace_variance(2 * 101) - 1) < 0.15
    assert max(ss) < 1e6  # the unclamped 1e9 never leaks through
    assert len(set(ns)) > 5


def test_add_noise_never_draws_from_numpy(monkeypatch):
    def refuse(*_args, **_kwargs):
        raise AssertionError("the DP noise must not come from numpy's generator")

    for name in ("default_rng", "geometric", "laplace", "RandomState", "Generator"):
        monkeypatch.setattr(np.random, name, refuse)
    result, raw = _one_row()
    noisy = add_noise(result, raw, COUNT_AND_SUM, 1.0, {1: Bounds(0, 100)}).released
    assert isinstance(noisy.column("n")[0].as_py(), int)


def test_each_noisy_column_states_its_scale_and_95_percent_interval():
    result, raw = _one_row()
    spec = OutputSpec(
        columns=(*COUNT_AND_SUM.columns, OutputColumn("a", OutputRole.AGGREGATE, "avg"))
    )
    released = pa.table({"n": [100], "s": [1e9], "a": [50.0]})
    raw = raw.append_column("__n_2", pa.array([100])).append_column(
        "__clamped_2", pa.array([5000.0])
    )
    result = CheckResult(OutputVerdict.RELEASED, released, (), {}, DisclosureParams())
    table = add_noise(result, raw, spec, 2.0, {1: Bounds(0, 100), 2: Bounds(0, 100)}).released
    stated = released_noise(table)
    assert stated is not None and stated["epsilon"] == 2.0 and stated["confidence"] == 0.95
    assert "OpenDP" in stated["mechanism"]
    columns = stated["columns"]
    # four measurements per row (n, s, a's count and sum): epsilon 0.5 each
    assert columns["n"]["scale"] == pytest.approx(2.0)
    assert columns["n"]["half_width_95"] == half_width(2.0) == 6
    assert columns["s"]["scale"] == pytest.approx(202.0)
    assert columns["s"]["half_width_95"] == half_width(202.0)
    assert columns["a"]["half_width_95"] is None
    assert [m["quantity"] for m in columns["a"]["measurements"]] == ["count", "sum"]
    assert columns["a"]["epsilon"] == pytest.approx(1.0)
    assert sum(c["epsilon"] for c in columns.values()) == pytest.approx(2.0)


def test_an_entity_in_more_rows_than_the_l0_bound_fails_closed():
    """county x month over monthly records: one person in several rows of one set."""
    from pyroaring import BitMap

    from policies.dp import rows_per_entity_seen
    from policies.errors import PolicyRefusal

    spec = OutputSpec(columns=(OutputColumn("n", OutputRole.AGGREGATE, "count_star"),))
    released = pa.table({"n": [3, 2, 4]})
    result = CheckResult(OutputVerdict.RELEASED, released, (), {}, DisclosureParams())
    lists = [[1, 2, 3], [3, 4], [5, 6, 7, 8]]  # entity 3 in two rows
    for evidence in (lists, [BitMap(x).serialize() for x in lists]):
        raw = pa.table({"__n_0": [3, 2, 4], "__entities": evidence, "__grouping": [0, 0, 0]})
        assert rows_per_entity_seen(raw) == 2
        with pytest.raises(PolicyRefusal) as refused:
            add_noise(result, raw, spec, 1.0, {})
        assert refused.value.rule == "dp_contributions"
        assert add_noise(result, raw, spec, 1.0, {}, rows_per_entity=2).released.num_rows == 3
    # the same entity in two grouping sets (a margin and its rows) is allowed for
    raw = pa.table({"__n_0": [3, 2, 4], "__entities": lists, "__grouping": [0, 1, 1]})
    assert rows_per_entity_seen(raw) == 1
    add_noise(result, raw, spec, 1.0, {})
