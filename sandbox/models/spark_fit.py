"""Training with Spark MLlib on the platform's Spark session (``engine = spark``).

:func:`sandbox.models.service.train` calls :func:`train_on_spark` instead of the
isolated worker when the platform's ``engine`` is ``spark`` and the algorithm is one of
:data:`ALGORITHMS`. It answers as the worker does (:mod:`sandbox.models.train`): a
:class:`~sandbox.run.runner.RunResult` whose table holds each entity's score and whose
schema metadata holds the ``model`` meta (the arrays, the figures, the timings) or a
failure (``entities``, ``label_values``, ``feature_type``, ``too_few_entities``), so
the service judges, signs and records the model exactly as a local one.

On Spark (one job of :meth:`sandbox.run.engines.spark.SparkEngine.job`: the granted
snapshots as temporary views, ``spark.sql.runSQLOnFiles`` off, cancelled at
``model.time_limit_s``):

1. the admitted features query, translated and checked by
   :func:`sandbox.run.engines.spark.spark_sql`; the entity keys and labels are
   collected (at most ``model.max_entities`` and one);
2. the held-out split is drawn on the driver as the worker draws it (stratified,
   the entities ordered by key, the request's seed), so both engines hold out the same
   entities, and joined back to the rows;
3. the model is fitted by MLlib (:func:`estimator`) on the training rows and read
   as arrays (:mod:`sandbox.models.spark_arrays`); its split points are moved off the
   data, its rare-value parameters counted and every entity scored by those arrays,
   by numpy on the executors.

On the driver: the held-out evaluation (:func:`sandbox.models.fit.evaluate`) over the
collected held-out scores, and the attacks (:func:`sandbox.models.attacks.attack`) on
a collected sample of ``model.attack_sample`` members and as many held-out entities
(the entities the worker would attack, in another order), the target answering from
its arrays and the shadow models scikit-learn's, trained like the local path's. The
time limit is Spark's cancellation while Spark works and a check after the fit and
at the end.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from jobs.model_checks import FittedArrays
from policies.errors import JobFailed
from sandbox.core.platform import Platform
from sandbox.models import portable
from sandbox.models.attacks import attack
from sandbox.models.fit import arrays_to_json, evaluate, make_estimator
from sandbox.models.spark_arrays import (
    fitted_arrays,
    off_the_data,
    rare_parameters,
    score_rows,
)
from sandbox.run.runner import RunResult

ALGORITHMS = {
    "logistic_regression": "pyspark.ml.classification.LogisticRegression",
    "decision_tree": "pyspark.ml.regression.DecisionTreeRegressor",
    "gradient_boosting": "pyspark.ml.classification.GBTClassifier",
}
ENTITY = "entity_"  # the entity key's output in the admitted features query
LAYERS = (
    "spark_sql_checked",
    "spark_granted_views_only",
    "spark_run_sql_on_files_off",
    "spark_in_memory_catalog",
)
# Our own columns start with '_': a feature's name starts with a letter.
ROW, HOLDOUT, LABEL, VECTOR = "_row", "_holdout", "_y", "_x"


def estimator(algorithm: str, params: Mapping[str, float], seed: int, n_train: int) -> Any:
    """MLlib's estimator for the admitted algorithm and parameters.

    A regression is scikit-learn's (L2 on standardised features, ``C``): MLlib
    minimises the mean log-loss plus ``regParam / 2`` times the squared standardised
    coefficients, so ``regParam = 1 / (C n)``. A tree's ``minInstancesPerNode`` is the
    admitted ``min_samples_leaf`` (never below the disclosure threshold). A decision
    tree is MLlib's regression tree on the 0/1 label: its variance, p(1 - p), is half
    the Gini impurity, so it splits as a Gini classification tree and each leaf's value
    is its share of label 1. (``DecisionTreeClassifier`` merges sibling leaves that
    predict the same class: on a rare label it keeps a stump, and its scores are lost.)"""
    from pyspark.ml.classification import GBTClassifier, LogisticRegression
    from pyspark.ml.regression import DecisionTreeRegressor

    if algorithm == "logistic_regression":
        return LogisticRegression(
            featuresCol=VECTOR,
            labelCol=LABEL,
            family="binomial",
            regParam=1.0 / (float(params["C"]) * max(1, n_train)),
            elasticNetParam=0.0,
            standardization=True,
            maxIter=int(params["max_iter"]),
        )
    if algorithm == "decision_tree":
        return DecisionTreeRegressor(
            featuresCol=VECTOR,
            labelCol=LABEL,
            impurity="variance",
            maxDepth=int(params["max_depth"]),
            minInstancesPerNode=int(params["min_samples_leaf"]),
            seed=seed,
        )
    if algorithm == "gradient_boosting":
        return GBTClassifier(
            featuresCol=VECTOR,
            labelCol=LABEL,
            maxIter=int(params["n_estimators"]),
            maxDepth=int(params["max_depth"]),
            stepSize=float(params["learning_rate"]),
            minInstancesPerNode=int(params["min_samples_leaf"]),
            seed=seed,
        )
    raise ValueError(f"no Spark MLlib algorithm {algorithm}")  # the service keeps this unreachable


def train_on_spark(
    platform: Platform, sql: str, snapshots: Mapping[str, Path], task: Mapping[str, Any]
) -> RunResult:
    """Train on the platform's Spark session (see the module); the worker's answer."""
    from sandbox.run.engines.spark import engine_for, spark_sql

    started = time.perf_counter()
    time_s = float(platform.settings.model.time_limit_s)
    task = {**task, "max_rows": platform.settings.model.max_entities}
    engine = engine_for(platform.settings.spark.master)
    translated = spark_sql(sql, snapshots)
    state: dict[str, Any] = {"meta": {}, "timings": {}}
    with engine.job(snapshots, time_s) as spark:
        frame = spark.sql(translated)
        _on_spark(spark, frame, task, state, started, time_s)
    meta = state["meta"]
    if "failure" not in meta:
        meta = _judged_on_driver(state, task, platform.settings.job.threads)
        _within(started, time_s)
    meta["timings"] = {**meta.get("timings", {}), **state["timings"]}
    table = state.get("scored")
    if table is None:
        table = pa.table({"entity": pa.array([], pa.string()), "score": pa.array([], pa.float64())})
    table = table.replace_schema_metadata({"model": json.dumps(meta)})
    total = time.perf_counter() - started
    return RunResult(table=table, layers=LAYERS, wait_s=0.0, total_s=total, spare_used=False)


def _within(started: float, time_s: float) -> None:
    if time.perf_counter() - started > time_s:
        raise JobFailed(
            f"the job exceeded its time limit of {time_s:g} s and was stopped", code="time_limit"
        )


def _numeric(kind: Any) -> bool:
    from pyspark.sql.types import BooleanType, NumericType

    return isinstance(kind, NumericType | BooleanType)


def _on_spark(
    spark: Any, frame: Any, task: Mapping[str, Any], state: dict, started: float, time_s: float
) -> None:
    """Everything that reads rows: the checks of the worker's failures, the split, the
    fit, the arrays, the scores and the attacks' sample (into ``state``)."""
    from pyspark.sql import functions as F

    features = list(task["features"])
    types = {f.name: f.dataType for f in frame.schema.fields}
    label_ok = _numeric(types[task["label"]])
    wrong = next((name for name in features if not _numeric(types[name])), None)
    columns = [f"_f{i}" for i in range(len(features))]
    label = F.col(task["label"]).cast("double") if label_ok else F.lit(None).cast("double")
    chosen = [F.col(ENTITY), label.alias(LABEL)]
    if wrong is None:  # a cast of text to a number would fail the query (ANSI mode)
        filled = [
            F.coalesce(F.nanvl(F.col(n).cast("double"), F.lit(0.0)), F.lit(0.0)) for n in features
        ]
        chosen += [value.alias(c) for value, c in zip(filled, columns, strict=True)]
    rows = frame.select(*chosen).cache()
    try:
        keys = _to_arrow(rows.select(ENTITY, LABEL).limit(int(task["max_rows"]) + 1))
        state["timings"]["query_s"] = round(time.perf_counter() - started, 3)
        failure, kept = _failure(keys, task, label_ok, wrong)
        if failure is not None:
            state["meta"] = failure
            return
        split = _split(kept, task)
        state.update(split)
        data = _joined(spark, rows, kept, split["holdout_rows"]).cache()
        try:
            _fit_and_score(data, columns, task, state, started, time_s)
        finally:
            data.unpersist()
    finally:
        rows.unpersist()


def _failure(
    keys: pa.Table, task: Mapping[str, Any], label_ok: bool, wrong: str | None
) -> tuple[dict[str, Any] | None, pa.Table]:
    """The worker's failures in the worker's order, or None and the entities whose label
    is 0 or 1 (ordered by key, as the worker's query orders them). Fewer than the
    threshold with another label are left out, as in the worker."""
    k = int(task["min_entities"])
    if keys.num_rows > int(task["max_rows"]):
        return {"failure": "entities", "subject": str(task["max_rows"])}, keys
    if not label_ok:
        return {"failure": "label_values", "subject": task["label"]}, keys
    keys = keys.sort_by([(ENTITY, "ascending")])
    y = keys.column(LABEL).to_numpy(zero_copy_only=False)
    valid = np.isin(np.nan_to_num(y, nan=-1.0), [0.0, 1.0])
    if keys.num_rows - int(valid.sum()) >= k:
        return {"failure": "label_values", "subject": task["label"]}, keys
    if wrong is not None:
        return {"failure": "feature_type", "subject": wrong}, keys
    kept = keys.filter(pa.array(valid))
    labels = kept.column(LABEL).to_numpy(zero_copy_only=False).astype(np.int64)
    smallest = min(int(np.sum(labels == 0)), int(np.sum(labels == 1)))
    if smallest * float(task["holdout"]) < 2 * k:
        return {"failure": "too_few_entities", "subject": str(k)}, keys
    return None, kept


def _split(kept: pa.Table, task: Mapping[str, Any]) -> dict[str, Any]:
    """The worker's split of the same entities: ``train_test_split`` of their positions
    with the labels, the holdout share and the seed, so the same entities fall on each
    side, in the same order."""
    from sklearn.model_selection import train_test_split

    y = kept.column(LABEL).to_numpy(zero_copy_only=False).astype(np.int64)
    positions = np.arange(y.size)
    train, held = train_test_split(
        positions, test_size=float(task["holdout"]), stratify=y, random_state=int(task["seed"])
    )
    holdout_rows = np.zeros(y.size, dtype=bool)
    holdout_rows[held] = True
    return {"y": y, "train": train, "held": held, "holdout_rows": holdout_rows, "kept": kept}


def _joined(spark: Any, rows: Any, kept: pa.Table, holdout_rows: np.ndarray) -> Any:
    """The kept entities' rows, each with its position (``_row``) and side (``_holdout``)."""
    positions = pa.table(
        {
            "_key": kept.column(ENTITY),
            ROW: pa.array(np.arange(kept.num_rows), pa.int64()),
            HOLDOUT: pa.array(holdout_rows),
        }
    )
    sides = _from_arrow(spark, positions)
    joined = rows.join(sides, rows[ENTITY].eqNullSafe(sides["_key"]), "inner")
    return joined.drop(ENTITY, "_key")


def _fit_and_score(
    data: Any, columns: list[str], task: Mapping[str, Any], state: dict, started: float,
    time_s: float,
) -> None:  # fmt: skip
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    algorithm, params, seed = task["algorithm"], task["params"], int(task["seed"])
    k = int(task["min_entities"])
    train = data.filter(~F.col(HOLDOUT))
    n_train = int(state["train"].size)
    assembled = VectorAssembler(inputCols=columns, outputCol=VECTOR).transform(train)
    t0 = time.perf_counter()
    model = estimator(algorithm, params, seed, n_train).fit(assembled)
    state["timings"]["fit_s"] = round(time.perf_counter() - t0, 3)
    _within(started, time_s)
    t1 = time.perf_counter()
    fitted, outputs = fitted_arrays(model, algorithm, n_train, len(columns))
    if fitted.trees:
        fitted = off_the_data(train, columns, fitted)
    arrays = arrays_to_json(fitted, outputs)
    state["fitted"], state["arrays"] = fitted, arrays
    state["rare"] = rare_parameters(train, columns, fitted, k)
    t2 = time.perf_counter()
    scored = _to_arrow(score_rows(data, ROW, columns, arrays))
    scores = np.zeros(int(state["y"].size))
    scores[scored.column(ROW).to_numpy()] = scored.column("score").to_numpy(zero_copy_only=False)
    state["scores"] = scores
    state["sample"] = _attack_sample(data, columns, state, task)
    state["timings"]["arrays_s"] = round(t2 - t1, 3)  # read, moved off the data, counted
    state["timings"]["score_s"] = round(time.perf_counter() - t2, 3)


def _attack_sample(
    data: Any, columns: list[str], state: dict, task: Mapping[str, Any]
) -> dict[str, np.ndarray]:
    """The members and held-out entities the attacks read, drawn as
    :func:`sandbox.models.attacks.attack` draws them from the worker's split, and their
    features collected to the driver."""
    from pyspark.sql import functions as F

    train, held = state["train"], state["held"]
    rng = np.random.default_rng(int(task["seed"]))
    m = min(int(task["attack_sample"]), train.size, held.size)
    members = train[rng.choice(train.size, m, replace=False)]
    outsiders = held[rng.choice(held.size, m, replace=False)]
    wanted = np.concatenate([members, outsiders])
    picked = _to_arrow(data.filter(F.col(ROW).isin([int(r) for r in wanted])).select(ROW, *columns))
    where = {int(r): i for i, r in enumerate(picked.column(ROW).to_pylist())}
    matrix = np.column_stack([picked.column(c).to_numpy(zero_copy_only=False) for c in columns])
    x = matrix[[where[int(r)] for r in wanted]]
    return {"x_in": x[:m], "x_out": x[m:], "in": members, "out": outsiders}


class _Target:
    """The judged arrays as an estimator the attacks can ask (``predict_proba``)."""

    def __init__(self, arrays: Mapping[str, Any]):
        self.description = {"format": portable.FORMAT, "model": dict(arrays)}

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = portable.predict(self.description, x)
        return np.column_stack([1.0 - p, p])


def _judged_on_driver(state: dict, task: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """The held-out evaluation and the attacks, and the meta the worker would answer."""
    import pyspark
    from sklearn import __version__ as sklearn_version
    from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

    algorithm, params, seed = task["algorithm"], task["params"], int(task["seed"])
    k = int(task["min_entities"])
    y, scores, sample = state["y"], state["scores"], state["sample"]
    evaluation = evaluate(y[state["held"]], scores[state["held"]], k)
    t1 = time.perf_counter()
    with threadpool_limits(limits=max(1, int(threads))):
        figures = attack(
            lambda: make_estimator(algorithm, params, seed),
            _Target(state["arrays"]),
            sample["x_in"],
            y[sample["in"]],
            sample["x_out"],
            y[sample["out"]],
            sample=int(task["attack_sample"]),
            shadows=int(task["shadow_models"]),
            seed=seed,
        )
    state["timings"]["attack_s"] = round(time.perf_counter() - t1, 3)
    fitted: FittedArrays = state["fitted"]
    kept: pa.Table = state["kept"]
    state["scored"] = pa.table(
        {"entity": kept.column(ENTITY).cast(pa.string()), "score": pa.array(scores, pa.float64())}
    )
    return {
        "arrays": state["arrays"],
        "rare_parameters": int(state["rare"]),
        "evaluation": evaluation,
        "attacks": figures.to_dict(),
        "entities": {"train": int(fitted.n_train), "holdout": int(state["held"].size)},
        "library": {"pyspark": pyspark.__version__, "scikit-learn": sklearn_version},
        "engine": {
            "name": "spark",
            "estimator": ALGORITHMS[algorithm],
            "attacks": "scikit-learn shadow models on a collected sample",
        },
    }


def _to_arrow(frame: Any) -> pa.Table:
    if hasattr(frame, "toArrow"):  # pyspark 4
        return frame.toArrow()
    return pa.Table.from_pandas(frame.toPandas(), preserve_index=False)


def _from_arrow(spark: Any, table: pa.Table) -> Any:
    import pyspark

    if int(pyspark.__version__.split(".")[0]) >= 4:
        return spark.createDataFrame(table)
    return spark.createDataFrame(table.to_pandas())
