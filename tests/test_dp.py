"""The differential-privacy mode: the noise, and a persistent budget that stops averaging.

The mechanism (OpenDP's samplers) is checked statistically in
tests/test_dp_noise.py; here the mode runs end to end through an agreement made by
the real workflow, the real JobService and worker, and a platform reopened from its
home, and the released product states each noisy column's scale and 95% interval.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from policies.classes import Classification
from policies.dp import (
    Bounds,
    Budget,
    discrete_laplace_variance,
    half_width,
    refuse_unsupported,
    released_noise,
)
from policies.errors import PolicyRefusal
from policies.outputs import OutputColumn, OutputRole, OutputSpec
from sandbox.core import ledger
from sandbox.core.platform import Platform
from sandbox.data import vault
from sandbox.guard import dp_admin, dp_budget, dp_views
from sandbox.run.execution import JobService
from sandbox.run.jobstate import JobState
from tests.conftest import PUMS_CLASSIFICATION
from tests.workflow_helpers import granted, make_cast

YEAR = datetime.now(UTC).year  # the year of the jobs' submission, whose budget they draw on
QUERY = "SELECT sex, COUNT(*) AS n, SUM(income) AS total FROM pums GROUP BY sex ORDER BY sex"
TRUE_N = {0: 486, 1: 514}


def test_what_the_dp_mode_cannot_release_is_refused_with_the_article():
    spec = OutputSpec(
        columns=(
            OutputColumn("m", OutputRole.AGGREGATE, "max"),
            OutputColumn("s", OutputRole.AGGREGATE, "sum"),
        )
    )
    with pytest.raises(PolicyRefusal) as refused:
        refuse_unsupported(spec, {1: "income"}, {"income": Bounds(0, 1)})
    assert refused.value.rule == "dp_unsupported" and refused.value.article == "Art. 15"
    with pytest.raises(PolicyRefusal) as refused:
        refuse_unsupported(OutputSpec(columns=spec.columns[1:]), {0: None}, {})
    assert refused.value.rule == "dp_unbounded"
    assert Budget(1.0, 0.9, 0.5).refusal().rule == "dp_budget_exhausted"
    assert Budget(1.0, 0.5, 0.5).refusal() is None


# PUMS with its sex codes declared: the DP mode releases the declared grid of its keys.
DP_PUMS = {**PUMS_CLASSIFICATION, "domains": {"sex": {"codes": [0, 1]}}}


@pytest.fixture
def dp_cast(platform, make_principal, provider, pums_csv):
    vault.register(platform, provider, "pums", str(pums_csv), Classification.from_dict(DP_PUMS))
    cast = make_cast(platform, make_principal, provider)
    agreement_id, _grant = granted(cast)
    dp_mode(platform, cast, agreement_id, share=1.0, bounds={"income": (0, 200_000)})
    return cast, agreement_id


def dp_mode(platform, cast, agreement_id, *, share, bounds, total=10.0, per_query=0.5):
    """The persons' budget for this year, the agreement's share of it, its DP mode on pums."""
    with platform.store.read() as conn:
        have = dp_views.budgets(conn, cast.city, YEAR)["budgets"]
    if not have:
        dp_admin.set_total(platform, cast.city, "person", YEAR, total)
    dp_admin.set_share(platform, cast.city, agreement_id, YEAR, share)
    dp_admin.configure(
        platform, cast.city, agreement_id, "pums", per_query=per_query, bounds=bounds
    )


def spent(platform, agreement_id) -> float:
    with platform.store.read() as conn:
        return dp_budget.balance(conn, agreement_id, "person", YEAR).share_spent


def _released(platform, outcome) -> list[dict]:
    path = platform.home / "products" / outcome.product_id / "output.parquet"
    return pq.read_table(path).to_pylist()


def _stated_noise(platform, outcome) -> dict | None:
    path = platform.home / "products" / outcome.product_id / "output.parquet"
    return released_noise(pq.read_table(path))


def test_averaging_noisy_answers_is_stopped_by_a_budget_that_survives_a_restart(platform, dp_cast):
    """Attacker: repeat the same count and average the answers until the noise cancels.

    The budget allows epsilon 1.0 at 0.5 a job: two answers. Each count carries
    discrete Laplace noise of scale 4 (0.5 split over two measurements), so the mean
    of two keeps a standard deviation near 4: the exact counts stay unknown.
    """
    cast, agreement_id = dp_cast
    service = JobService(platform, spare=False)
    answers = []
    try:
        for remaining in (0.5, 0.0):
            outcome = service.submit(cast.operator, {"sql": QUERY})
            assert outcome.state is JobState.RELEASED, (outcome.reason, outcome.report)
            assert outcome.report["dp"]["remaining"] == pytest.approx(remaining)
            answers.append({r["sex"]: r["n"] for r in _released(platform, outcome)})
            # the product states each noisy column's scale and 95% interval (OpenDP's)
            stated = _stated_noise(platform, outcome)
            assert stated is not None and stated["epsilon"] == 0.5
            n, total = stated["columns"]["n"], stated["columns"]["total"]
            assert n["scale"] == pytest.approx(4.0) and n["half_width_95"] == half_width(4.0)
            assert total["scale"] == pytest.approx(4 * 200_001)
            assert total["half_width_95"] == half_width(4 * 200_001)
        refused = service.submit(cast.operator, {"sql": QUERY})
    finally:
        service.close()
    assert refused.state is JobState.REFUSED
    assert refused.reason["rule"] == "dp_budget_exhausted"
    assert refused.reason["article"] == "Art. 15"
    assert f"agreement {agreement_id} has 0 of its share of 1 left" in refused.reason["message"]
    assert "the person population has 9 of 10 left" in refused.reason["message"]
    # What two answers allow: the mean's noise keeps a standard deviation of about 4.
    sd_of_mean = math.sqrt(discrete_laplace_variance(1 / (0.5 / 2)) / len(answers))
    assert sd_of_mean > 3
    assert all(abs(a[s] - TRUE_N[s]) < 60 for a in answers for s in TRUE_N)
    with platform.store.read() as conn:
        spends = ledger.query(conn, action="dp.spend")
    assert [e["details"]["epsilon"] for e in spends] == [0.5, 0.5]

    # The budget is in the store: a restarted platform still refuses.
    home = platform.home
    platform.close()
    reopened = Platform.open(home)
    try:
        with reopened.store.read() as conn:
            shown = dp_views.shares(conn, cast.operator, YEAR)["shares"]
        assert shown[0]["spent"] == pytest.approx(1.0)
        assert shown[0]["remaining"] == 0
        service = JobService(reopened, spare=False)
        try:
            again = service.submit(cast.operator, {"sql": QUERY})
        finally:
            service.close()
        assert again.state is JobState.REFUSED and again.reason["rule"] == "dp_budget_exhausted"
    finally:
        reopened.close()


def test_a_dp_job_summing_an_unbounded_measure_is_refused_and_spends_nothing(platform, dp_cast):
    cast, agreement_id = dp_cast
    service = JobService(platform, spare=False)
    try:
        outcome = service.submit(cast.operator, {"sql": "SELECT SUM(income * 2) AS s FROM pums"})
    finally:
        service.close()
    assert outcome.state is JobState.REFUSED
    assert outcome.reason["rule"] in ("dp_unbounded", "aggregate_expression")
    assert spent(platform, agreement_id) == 0  # refused at admission: nothing charged


# The columns the helpers' agreement names; sex and education with declared codes (the
# DP mode releases the declared grid of its keys).
PANEL_COLUMNS = {
    "sex": "dimension",
    "educ": "dimension",
    "age": "quasi",
    "income": "measure",
    "pid": "identifier",
}


def _register_panel(platform, provider, tmp_path, rows: list[str], **declared) -> None:
    """``rows`` (pid,sex,educ,age,income) registered as ``pums`` with ``declared`` keys
    added to its classification (domains default to sex 0/1 and education 1 to 3)."""
    csv = tmp_path / "panel.csv"
    csv.write_text("\n".join(["pid,sex,educ,age,income", *rows]) + "\n")
    classification = {
        "entity_key": "pid",
        "columns": PANEL_COLUMNS,
        "domains": {"sex": {"codes": [0, 1]}, "educ": {"codes": [1, 2, 3]}},
        **declared,
    }
    vault.register(platform, provider, "pums", str(csv), Classification.from_dict(classification))


def _waves() -> list[str]:
    """300 persons, each in three survey waves (education recorded each wave)."""
    return [
        f"{p},{p % 2},{wave},{20 + p % 40},{1000 * wave + p}"
        for p in range(1, 301)
        for wave in (1, 2, 3)
    ]


def test_a_dp_job_putting_one_person_in_several_rows_fails_closed(
    platform, make_principal, provider, tmp_path
):
    """A panel (one row per person and survey wave, education recorded each wave) grouped
    by education puts a person in up to three rows of one grouping set: noise scaled for
    one row would understate epsilon threefold. The entity evidence shows it, so the job
    fails and releases nothing (its epsilon, charged when it was queued, stays spent); grouped by a key fixed per person (sex),
    the same data is released."""
    _register_panel(platform, provider, tmp_path, _waves())
    cast = make_cast(platform, make_principal, provider)
    agreement_id, _grant = granted(cast)
    dp_mode(platform, cast, agreement_id, share=1.0, bounds={})
    service = JobService(platform, spare=False)
    try:
        by_educ = service.submit(
            cast.operator, {"sql": "SELECT educ, COUNT(*) AS n FROM pums GROUP BY educ"}
        )
        by_sex = service.submit(
            cast.operator, {"sql": "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"}
        )
    finally:
        service.close()
    assert by_educ.state is JobState.FAILED and by_educ.product_id is None
    assert by_educ.reason["rule"] == "dp_contributions", by_educ.reason
    assert by_sex.state is JobState.RELEASED, (by_sex.reason, by_sex.report)
    # Both spent their epsilon when they were queued: the failure refunds nothing (a
    # refund decided by the run's outcome would tell whether the data put a person twice).
    assert spent(platform, agreement_id) == pytest.approx(1.0)


def test_the_dp_mode_judges_nothing_on_true_values_and_releases_the_declared_grid(
    platform, make_principal, provider, tmp_path
):
    """Issue 18: which cells appear, and which carry a value, may not depend on the data.
    One person alone in a sex, a declared sex with nobody and a value the data
    holds but the provider did not declare (NULL): the released table is the declared
    grid, every cell noisy (no threshold suppression of the lone person, a noisy value
    for the empty sex), and the NULL is not a row."""
    rows = [f"{p},{0 if p == 1 else 1},{9},{30},{1000}" for p in range(1, 201)]
    rows += ["999,,9,30,1000"]  # sex NULL: in the data, not a declared code
    _register_panel(platform, provider, tmp_path, rows, domains={"sex": {"codes": [0, 1, 2]}})
    cast = make_cast(platform, make_principal, provider)
    agreement_id, _grant = granted(cast)
    dp_mode(platform, cast, agreement_id, share=1.0, bounds={"income": (0, 2000)})
    service = JobService(platform, spare=False)
    try:
        outcome = service.submit(
            cast.operator,
            {"sql": "SELECT sex, COUNT(*) AS n, SUM(income) AS s FROM pums GROUP BY sex"},
        )
        refused = service.submit(
            cast.operator, {"sql": "SELECT educ, COUNT(*) AS n FROM pums GROUP BY educ"}
        )
    finally:
        service.close()
    assert outcome.state is JobState.RELEASED, (outcome.reason, outcome.report)
    rows = {r["sex"]: r for r in _released(platform, outcome)}
    assert set(rows) == {0, 1, 2}  # the declared grid: no NULL, and 2 though nobody is there
    assert all(r["n"] is not None and r["s"] is not None for r in rows.values())
    assert outcome.report["counts"]["suppressed"] == 0
    # an undeclared key is refused before it runs (and spends nothing)
    assert refused.state is JobState.REFUSED and refused.reason["rule"] == "dp_undeclared_grid"


def test_the_clamp_is_the_providers_declared_bounds(platform, make_principal, provider, pums_csv):
    """The classification declares the range of one person's income: the DP mode clamps
    to it and scales the noise for it, with no bounds from the agreement."""
    declared = {**DP_PUMS, "bounds": {"income": [0, 100_000]}}
    vault.register(platform, provider, "pums", str(pums_csv), Classification.from_dict(declared))
    cast = make_cast(platform, make_principal, provider)
    agreement_id, _grant = granted(cast)
    dp_mode(platform, cast, agreement_id, share=1.0, bounds={})
    service = JobService(platform, spare=False)
    try:
        outcome = service.submit(cast.operator, {"sql": QUERY})
    finally:
        service.close()
    assert outcome.state is JobState.RELEASED, (outcome.reason, outcome.report)
    stated = _stated_noise(platform, outcome)
    assert stated is not None
    assert stated["columns"]["total"]["scale"] == pytest.approx(4 * 100_001)
    assert all(
        0 <= r["total"] <= 1000 * 100_000 + 40 * 4 * 100_001 for r in _released(platform, outcome)
    )


def test_a_declared_l0_bound_scales_the_noise_instead_of_failing(
    platform, make_principal, provider, tmp_path
):
    """The same panel, its classification declaring that one person's records reach at
    most three rows of a grouping set (rows_per_entity: 3): grouped by education it is
    released, with noise three times the scale of a table where a person is in one row."""
    _register_panel(platform, provider, tmp_path, _waves(), rows_per_entity=3)
    cast = make_cast(platform, make_principal, provider)
    agreement_id, _grant = granted(cast)
    dp_mode(platform, cast, agreement_id, share=1.0, bounds={})
    service = JobService(platform, spare=False)
    try:
        by_educ = service.submit(
            cast.operator, {"sql": "SELECT educ, COUNT(*) AS n FROM pums GROUP BY educ"}
        )
    finally:
        service.close()
    assert by_educ.state is JobState.RELEASED, (by_educ.reason, by_educ.report)
    stated = _stated_noise(platform, by_educ)
    assert stated is not None
    # sensitivity 3 (three rows per person) over epsilon 0.5: scale 6, not 2
    assert stated["columns"]["n"]["scale"] == pytest.approx(6.0)
