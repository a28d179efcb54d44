"""The training task, run inside the model worker (:mod:`sandbox.models.worker`).

The worker has isolated and confined itself exactly as a SQL job's worker does
(:func:`sandbox.run.worker.serve`); this task then reads the granted snapshots through
the same locked DuckDB connection (:func:`sandbox.run.worker.connect`), runs the
admitted features query (one row per entity), and in the worker's memory:

1. splits the entities into training and held-out parts (stratified by the label);
2. fits the model (:func:`sandbox.models.fit.fit`);
3. evaluates it on the held-out part (AUC, KS, calibration by deciles);
4. counts the parameters equal to a rare value (:func:`jobs.model_checks.rare_value_parameters`);
5. runs the simulated membership-inference attacks (:mod:`sandbox.models.attacks`);
6. scores every entity.

It writes ``result.arrow``: one row per entity (``entity``, ``score``), which stays in
the platform for the scoring service, and in the file's schema metadata the fitted
arrays and the figures (``model``), or a failure the platform words (``failure``:
``label_values``, ``feature_type``, ``too_few_entities``, ``entities``), naming at
most an output of the operator's own query, never a value.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

import numpy as np

# Our own modules are imported here, before the worker confines itself: after Landlock
# it reads only the Python installation (scikit-learn comes from there) and its snapshots.
from jobs.model_checks import rare_value_parameters
from sandbox.models.attacks import attack
from sandbox.models.fit import (
    arrays_of,
    arrays_to_json,
    evaluate,
    fit,
    make_estimator,
    outputs_of,
)
from sandbox.run.worker import RESULT_NAME, connect

ENTITY = "entity_"


def train_task(task: dict) -> dict:
    import pyarrow as pa

    started = time.perf_counter()
    con = connect(task)
    table = con.sql(task["sql"]).to_arrow_table()
    query_s = time.perf_counter() - started
    meta: dict[str, Any]
    scored = None
    if table.num_rows > int(task["max_rows"]):
        meta = {"failure": "entities", "subject": str(task["max_rows"])}
    else:
        # The interpreter was kept single-threaded until Landlock bound it; scikit-learn's
        # OpenMP runtime, loaded with its first import below, may use the job's threads
        # (setting job.threads). (threadpoolctl cannot: it reads /proc, which is closed.)
        os.environ["OMP_NUM_THREADS"] = str(int(task["threads"]))
        meta, scored = train_on(table, task)
    meta["timings"] = {**meta.get("timings", {}), "query_s": round(query_s, 3)}
    if scored is None:
        out = pa.table({"entity": pa.array([], pa.string()), "score": pa.array([], pa.float64())})
    else:
        out = scored
    out = out.replace_schema_metadata({"model": json.dumps(meta)})
    with pa.OSFile(RESULT_NAME, "wb") as sink, pa.ipc.new_file(sink, out.schema) as writer:
        writer.write_table(out)
    return {"ok": True, "rows": table.num_rows, "engine_s": round(time.perf_counter() - started, 4)}


def _matrix(table: Any, names: list[str]) -> np.ndarray | str:
    """The features as a float matrix (missing as 0), or the name of a non-numeric one."""
    import pyarrow as pa

    columns = []
    for name in names:
        column = table.column(name)
        kind = column.type
        if not (
            pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)
        ):
            if not pa.types.is_decimal(kind):
                return name
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        columns.append(np.nan_to_num(values, nan=0.0))
    return np.column_stack(columns) if columns else np.zeros((table.num_rows, 0))


def _labelled(table: Any, name: str, k: int) -> Any | None:
    """The entities whose label is 0 or 1, or None when the label is not a number or
    ``k`` or more entities have another label (or none). Fewer are left out of training
    and scoring: a failure for one entity's label would tell the operator, who wrote the
    label's expression, whether that entity met a condition of its choosing."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = table.column(name)
    kind = column.type
    if not (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_decimal(kind)
    ):
        return None  # decided by the query's types, never by a value
    valid = pc.fill_null(pc.is_in(column.cast(pa.float64()), pa.array([0.0, 1.0])), False)
    if table.num_rows - pc.sum(valid).as_py() >= k:
        return None
    return table.filter(valid)


def train_on(table: Any, task: dict) -> tuple[dict[str, Any], Any | None]:
    """Fit, evaluate, attack and score (see the module); the metadata and the scores
    (``entity``, ``score``) of the entities trained on."""
    import pyarrow as pa
    from sklearn import __version__ as sklearn_version
    from sklearn.model_selection import train_test_split

    k = int(task["min_entities"])
    labelled = _labelled(table, task["label"], k)
    if labelled is None:
        return {"failure": "label_values", "subject": task["label"]}, None
    table = labelled
    x = _matrix(table, list(task["features"]))
    if isinstance(x, str):
        return {"failure": "feature_type", "subject": x}, None
    y = table.column(task["label"]).cast(pa.float64()).to_numpy().astype(np.int64)
    holdout = float(task["holdout"])
    smallest = min(int(np.sum(y == 0)), int(np.sum(y == 1)))
    if smallest * holdout < 2 * k:
        return {"failure": "too_few_entities", "subject": str(k)}, None
    seed = int(task["seed"])
    rows = np.arange(y.size)
    i_tr, i_ho = train_test_split(rows, test_size=holdout, stratify=y, random_state=seed)
    x_tr, x_ho, y_tr, y_ho = x[i_tr], x[i_ho], y[i_tr], y[i_ho]
    algorithm, params = task["algorithm"], task["params"]
    t0 = time.perf_counter()
    model = fit(algorithm, params, seed, x_tr, y_tr)
    fit_s = time.perf_counter() - t0
    arrays = arrays_of(model, algorithm, int(y_tr.size), int(x.shape[1]))
    rare = rare_value_parameters(arrays, x_tr, k)
    scores = model.predict_proba(x)[:, 1]  # every entity's, once: the held-out ones among them
    evaluation = evaluate(y_ho, scores[i_ho], k)
    t1 = time.perf_counter()
    figures = attack(
        lambda: make_estimator(algorithm, params, seed),
        model,
        x_tr,
        y_tr,
        x_ho,
        y_ho,
        sample=int(task["attack_sample"]),
        shadows=int(task["shadow_models"]),
        seed=seed,
    )
    attack_s = time.perf_counter() - t1
    meta = {
        "arrays": arrays_to_json(arrays, outputs_of(model, algorithm)),
        "rare_parameters": rare,
        "evaluation": evaluation,
        "attacks": figures.to_dict(),
        "entities": {"train": int(y_tr.size), "holdout": int(y_ho.size)},
        "library": _libraries(algorithm, sklearn_version),
        "timings": {"fit_s": round(fit_s, 3), "attack_s": round(attack_s, 3)},
    }
    entities = table.column(ENTITY).cast(pa.string())
    return meta, pa.table({"entity": entities, "score": pa.array(scores, pa.float64())})


def _libraries(algorithm: str, sklearn_version: str) -> dict[str, str]:
    """The libraries the model was made with, for its card: scikit-learn's (the split,
    the evaluation, the shadow models), and LightGBM's for a LightGBM model."""
    found = {"scikit-learn": sklearn_version}
    if algorithm == "lightgbm":
        import lightgbm

        found["lightgbm"] = lightgbm.__version__
    return found
