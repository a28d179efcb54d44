"""Models on ``engine = spark`` (issue 22): Spark MLlib's logistic regression, decision tree
and gradient-boosted trees on the platform's Spark session, judged, signed and recorded as
a model of the local worker, and compared with the local model on the same data.

One Spark session (``local[2]``) serves the module; one platform home holds the credit
world of ``model_helpers``, read through two platform objects that differ in ``engine``
only. The data is small (2,500 enterprises) and the boosted models have few trees.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pytest
from model_helpers import BANDS, CONSENT, FEATURES, SOUND, World, credit_table, make_world

import jobs.model
from jobs.model_checks import (
    FittedArrays,
    TreeArrays,
    rare_value_parameters,
)
from policies.errors import JobFailed, PolicyRefusal
from sandbox.core import ledger, principals
from sandbox.core.ledger import now_utc
from sandbox.core.platform import Platform
from sandbox.data.products import fetch_product
from sandbox.models import calls, export, portable, service, services
from sandbox.models.card import verify_card
from sandbox.models.fit import arrays_to_json
from sandbox.models.spark_arrays import fitted_arrays, off_the_data, rare_parameters
from sandbox.models.spark_fit import ALGORITHMS, estimator
from sandbox.run.engines import spark as spark_engine
from sandbox.verification.keys import load_secret, normalise_key, subject_hash

pytest.importorskip("pyspark")
pytestmark = pytest.mark.spark

MASTER = "local[2]"
K = 10
PARAMS = {
    "logistic_regression": {"C": 1.0, "max_iter": 100},
    "decision_tree": SOUND["params"],
    "gradient_boosting": {
        "n_estimators": 8,
        "max_depth": 3,
        "learning_rate": 0.3,
        "min_samples_leaf": 60,
    },
}
COLUMNS = ["capital", "arrears_months", "staff", "bill_mean"]


@pytest.fixture(scope="module")
def engine():
    engine = spark_engine.engine_for(MASTER)
    engine.session()
    yield engine
    spark_engine.stop_all()


@dataclass
class Both:
    world: World
    local: Platform  # engine = duckdb: the isolated worker
    spark: Platform  # the same home, engine = spark


@pytest.fixture(scope="module")
def both(engine, tmp_path_factory) -> Both:
    folder = tmp_path_factory.mktemp("models-spark")
    local = Platform.init(folder / "home")
    local.settings = local.settings.changed(**{"model.shadow_models": 4})

    def make(name, role, *, org=None, jurisdiction=None):
        with local.store.transaction() as conn:
            return principals.insert(conn, name, role, org or name, jurisdiction, now_utc())

    world = make_world(local, make, folder / "data")
    spark = dataclasses.replace(
        local, settings=local.settings.changed(engine="spark", **{"spark.master": MASTER})
    )
    yield Both(world, local, spark)
    calls.close(spark)
    local.close()


@pytest.fixture(scope="module")
def trained(both: Both) -> dict[tuple[str, str], dict]:
    """The sound models of the three algorithms, each trained on each engine."""
    out = {}
    for algorithm, params in PARAMS.items():
        for name, platform in (("local", both.local), ("spark", both.spark)):
            request = {**SOUND, "name": f"{algorithm[:8]}_{name}", "algorithm": algorithm}
            out[name, algorithm] = service.train(
                platform, both.world.operator, {**request, "params": params}
            )
    return out


def _kept_scores(platform: Platform, name: str) -> dict[str, float]:
    with platform.store.read() as conn:
        row = service.model_row(conn, name)
    table = service.scores_of(platform, row.scores_path)
    hashes, scores = table.column("subject_hash").to_pylist(), table.column("score").to_pylist()
    return dict(zip(hashes, scores, strict=True))


@pytest.mark.parametrize("algorithm", sorted(PARAMS))
def test_a_sound_model_on_spark_passes_like_the_local_one(both: Both, trained, algorithm):
    local, spark = trained["local", algorithm]["card"], trained["spark", algorithm]["card"]
    assert spark["verdict"] == local["verdict"] == "passed", spark
    assert spark["engine"]["name"] == "spark"
    assert spark["engine"]["estimator"] == ALGORITHMS[algorithm]  # Spark MLlib
    assert "pyspark" in spark["library"] and "engine" not in local
    assert "spark_run_sql_on_files_off" in spark["isolation"]
    verify_card(both.spark, spark, trained["spark", algorithm]["signature"])
    with both.spark.store.read() as conn:
        entry = ledger.query(conn, action="model.trained", subject=f"model:{spark['name']}")[-1]
    assert entry["details"]["card_sha256"] == trained["spark", algorithm]["card_sha256"]
    # the same entities held out on both engines, the same checks, figures alike
    assert spark["entities"] == local["entities"]
    assert [f["rule"] for f in spark["structure"]] == [f["rule"] for f in local["structure"]]
    assert spark["evaluation"]["holdout_entities"] == local["evaluation"]["holdout_entities"]
    gap = abs(spark["evaluation"]["auc"] - local["evaluation"]["auc"])
    assert gap < (0.005 if algorithm == "logistic_regression" else 0.03), (spark, local)
    assert spark["evaluation"]["auc"] > 0.7
    assert spark["attacks"]["figures"]["members"] == local["attacks"]["figures"]["members"]
    # the kept scores of every entity: MLlib's regression is scikit-learn's (same
    # objective), its boosted trees another fit of the same kind
    mine, theirs = _kept_scores(both.spark, spark["name"]), _kept_scores(both.local, local["name"])
    assert mine.keys() == theirs.keys() and len(mine) == both.world.table.num_rows
    a = np.array([mine[h] for h in sorted(mine)])
    b = np.array([theirs[h] for h in sorted(mine)])
    if algorithm == "logistic_regression":
        assert np.max(np.abs(a - b)) < 0.01
    else:
        assert np.corrcoef(a, b)[0, 1] > 0.8


def test_a_spark_models_scores_grade_subjects(both: Both, trained):
    """The passed model's kept scores serve a scoring service as a local model's do: each
    subject gets the band of its score."""
    w, name = both.world, trained["spark", "logistic_regression"]["card"]["name"]
    services.define(both.spark, w.operator, {"name": "spark_grades", "model": name, "bands": BANDS})
    services.approve(both.spark, w.city, "spark_grades")
    codes = w.table.column("credit_code").to_pylist()[:6]
    result = calls.call(
        both.spark, w.consumer, "spark_grades", [{"key": c} for c in codes], CONSENT
    )
    kept = _kept_scores(both.spark, name)
    secret = load_secret(both.spark.home / "keys")
    expected = []
    for code in codes:
        score = kept[subject_hash(secret, (normalise_key(code),))]
        expected.append(next(b["grade"] for b in BANDS if score <= b["upto"]))
    assert [r.code for r in result.results] == expected


@pytest.mark.parametrize("algorithm", sorted(PARAMS))
def test_a_spark_model_is_exported_as_a_local_one(both: Both, trained, algorithm, tmp_path):
    """The approved export's model.onnx and model.json answer what the model scored inside."""
    w, name = both.world, trained["spark", algorithm]["card"]["name"]
    export.request_export(both.spark, w.operator, name)
    product = export.approve_export(both.spark, w.city, name)["product"]
    folder = fetch_product(both.spark, w.operator, product, tmp_path / "out")
    description = json.loads((folder / "model.json").read_text())
    codes = w.table.column("credit_code").to_pylist()[:12]
    x = np.column_stack([w.table.column(c).to_numpy()[:12] for c in COLUMNS]).astype(float)
    kept, secret = _kept_scores(both.spark, name), load_secret(both.spark.home / "keys")
    inside = np.array([kept[subject_hash(secret, (normalise_key(c),))] for c in codes])
    np.testing.assert_allclose(portable.predict(description, x), inside, atol=1e-12)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"features": x})[0][:, 0], inside, atol=1e-6)


def _frame(spark, rounded: bool = False):
    """The credit table's features as a Spark frame (``_f0``.., ``_y``, ``_x``) and as a
    matrix; ``rounded``: capital in thousands, so that many entities share a value."""
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    table = credit_table(2500)
    if rounded:
        thousands = pa.array(np.round(table.column("capital").to_numpy() / 1000))
        table = table.set_column(table.schema.get_field_index("capital"), "capital", thousands)
    frame = spark.createDataFrame(table.select([*COLUMNS, "defaulted"]))
    columns = [f"_f{i}" for i in range(len(COLUMNS))]
    frame = frame.select(
        *[F.col(c).cast("double").alias(f) for c, f in zip(COLUMNS, columns, strict=True)],
        F.col("defaulted").cast("double").alias("_y"),
    )
    x = np.column_stack([table.column(c).to_numpy().astype(float) for c in COLUMNS])
    return VectorAssembler(inputCols=columns, outputCol="_x").transform(frame), x, columns


@pytest.mark.parametrize(
    "algorithm, params",
    [
        ("logistic_regression", {"C": 1.0, "max_iter": 50}),
        ("decision_tree", PARAMS["decision_tree"]),
        ("gradient_boosting", PARAMS["gradient_boosting"]),
    ],
)
def test_mllibs_model_read_as_arrays_scores_as_mllib_does(engine, algorithm, params):
    """The arrays (what the checks judge and an export writes) are MLlib's model: the
    portable reading of them gives MLlib's own probabilities; every leaf holds at least
    ``minInstancesPerNode`` training entities and the root all of them."""
    frame, x, _ = _frame(engine.session())
    model = estimator(algorithm, params, 1, x.shape[0]).fit(frame)
    fitted, outputs = fitted_arrays(model, algorithm, x.shape[0], x.shape[1])
    arrays = arrays_to_json(fitted, outputs)
    ours = portable.predict({"format": portable.FORMAT, "model": arrays}, x)
    answered = model.transform(frame).toPandas()
    if algorithm == "decision_tree":  # MLlib's regression tree: its prediction is the share
        theirs = answered["prediction"].to_numpy()
    else:
        theirs = np.array([p[1] for p in answered["probability"]])
    assert np.allclose(ours, theirs, atol=1e-9), np.max(np.abs(ours - theirs))
    for tree in fitted.trees:
        assert tree.entities[0] == x.shape[0]
        assert tree.entities[tree.leaves].min() >= params["min_samples_leaf"]
        assert tree.entities[tree.leaves].sum() == x.shape[0]


def test_split_points_on_the_data_are_moved_and_counted_as_the_worker_counts(engine):
    """Split points that are values (one a value one entity holds) are counted by Spark
    as :func:`rare_value_parameters` counts them, and moved off the data: every row goes
    the same way, and none is a value any longer."""
    frame, x, columns = _frame(engine.session(), rounded=True)
    values, counts = np.unique(x[:, 0], return_counts=True)
    lone = float(values[:-1][counts[:-1] == 1][-1])  # one entity's, with larger values above
    tree = TreeArrays(
        children_left=np.array([1, 3, -1, -1, -1]),
        children_right=np.array([2, 4, -1, -1, -1]),
        feature=np.array([0, 1, -2, -2, -2]),
        threshold=np.array([lone, 2.0, -2.0, -2.0, -2.0]),
        entities=np.array([2500, 2400, 100, 2000, 400]),
    )
    before = FittedArrays("decision_tree", x.shape[0], x.shape[1], trees=(tree,))
    regression = FittedArrays(
        "logistic_regression", x.shape[0], 4, coef=np.array([0.5, 1.0, 3.0, 7e9]),
        intercept=np.array([lone]),
    )  # fmt: skip
    for fitted in (before, regression):
        expected = rare_value_parameters(fitted, x, K)
        assert rare_parameters(frame, columns, fitted, K) == expected
    assert rare_value_parameters(before, x, K) == 1
    after = off_the_data(frame, columns, before)
    assert rare_parameters(frame, columns, after, K) == rare_value_parameters(after, x, K) == 0
    moved = after.trees[0].threshold
    assert moved[1] == 2.5 and lone < moved[0] < values[values > lone][0]
    values = {"value": [0.0, 0.0, 1.0, 0.2, 0.8]}
    described = {"format": portable.FORMAT}
    same = [
        portable.predict(
            {**described, "model": arrays_to_json(f, {"values": [values["value"]]})}, x
        )
        for f in (before, after)
    ]
    assert np.array_equal(same[0], same[1])


def test_a_memorising_request_is_refused_on_spark(both: Both, monkeypatch):
    """Leaves below the threshold are refused before Spark runs anything. With that rule
    lifted (as test_models fits a memorising tree directly), MLlib's tree of leaves of
    single entities is judged by the service as a local one: refused, its card kept and
    signed, its scores and numbers not."""
    memorised = {**SOUND, "name": "memorised", "params": {"max_depth": 8, "min_samples_leaf": 1}}
    with pytest.raises(PolicyRefusal) as refused:
        service.train(both.spark, both.world.operator, memorised)
    assert refused.value.rule == "leaf_size"
    monkeypatch.setattr(jobs.model, "require_leaf_size", lambda *_: None)
    monkeypatch.setattr(service, "require_leaf_size", lambda *_: None)
    out = service.train(both.spark, both.world.operator, memorised)
    card = out["card"]
    assert card["verdict"] == "refused" and card["engine"]["name"] == "spark"
    smallest = next(f for f in card["structure"] if f["rule"] == "leaf_entities")
    assert not smallest["passed"] and smallest["figure"] < K, card["structure"]
    verify_card(both.spark, card, out["signature"])
    with both.spark.store.read() as conn:
        entry = ledger.query(conn, subject="model:memorised")[-1]
        row = service.model_row(conn, "memorised")
    assert entry["action"] == "model.refused" and "leaf_entities" in entry["details"]["failed"]
    assert row.status == "refused" and row.scores_path is None


BAD = {
    "label_values": FEATURES.replace("MAX(defaulted)", "MAX(staff)"),
    "feature_type": FEATURES.replace("MAX(staff) AS staff", "MAX(county) AS staff"),
    "too_few_entities": FEATURES.replace(
        "MAX(defaulted)", "MAX(CASE WHEN arrears_months >= 6 THEN 1 ELSE 0 END)"
    ),
}


@pytest.mark.parametrize("code", [*BAD, "entities"])
def test_a_failure_is_reported_as_the_worker_reports_it(both: Both, code):
    request = {**SOUND, "name": f"failing_{code}", "algorithm": "logistic_regression",
               "params": PARAMS["logistic_regression"], "features": BAD.get(code, FEATURES)}  # fmt: skip
    failures = {}
    for name, platform in (("local", both.local), ("spark", both.spark)):
        if code == "entities":
            changed = platform.settings.changed(**{"model.max_entities": 100})
            platform = dataclasses.replace(platform, settings=changed)
        with pytest.raises(JobFailed) as failed:
            service.train(platform, both.world.operator, request)
        failures[name] = (failed.value.code, failed.value.message)
    assert failures["spark"] == failures["local"] and failures["spark"][0] == code, failures
    with both.spark.store.read() as conn:
        entry = ledger.query(conn, action="model.failed", subject=f"model:{request['name']}")[-1]
    assert entry["details"]["code"] == code


def test_a_spark_training_over_its_time_limit_fails_and_the_session_lives_on(both: Both, engine):
    changed = both.spark.settings.changed(**{"model.time_limit_s": 0.5})
    hurried = dataclasses.replace(both.spark, settings=changed)
    request = {**SOUND, "name": "hurried"}
    with pytest.raises(JobFailed) as failed:
        service.train(hurried, both.world.operator, request)
    assert failed.value.code == "time_limit"
    assert engine.session().range(3).count() == 3
