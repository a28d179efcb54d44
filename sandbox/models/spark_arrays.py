"""Spark MLlib's fitted models as the checks' arrays, and what the checks need of the
training rows computed on Spark (``engine = spark``, :mod:`sandbox.models.spark_fit`).

* :func:`fitted_arrays`: an MLlib model as :class:`~jobs.model_checks.FittedArrays`
  and the outputs an export writes (:func:`sandbox.models.fit.outputs_of`'s form). A
  tree is read node by node through the model's Java objects (``rootNode()``): each
  split's feature and threshold (MLlib sends ``x <= threshold`` left, as scikit-learn
  does), each node's training entities (``impurityStats().rawCount()``, instances, not
  weights) and its value: a decision tree's share of label 1 (its mean of the 0/1
  label: MLlib's regression tree, see :func:`sandbox.models.spark_fit.estimator`), a
  boosted tree's raw contribution (MLlib's margin is the weighted sum of its trees and
  its probability ``1 / (1 + exp(-2 margin))``, so a tree adds twice its weight times
  its prediction, from a baseline of 0). A regression's coefficients and intercept are
  MLlib's own, in the features' units.
* :func:`off_the_data`: MLlib's split points are midpoints between values of a sample
  of the data (``maxBins`` candidates a feature), so one may be a value some entity
  holds; as for the local boosted trees (:mod:`sandbox.models.fit`), such a split point
  moves to the midpoint towards the next larger training value: every training entity
  goes the same way, and no split point is a value.
* :func:`rare_parameters`: :func:`jobs.model_checks.rare_value_parameters` over the
  training rows, which stay on Spark.
* :func:`score_rows`: every entity scored by the arrays (moved split points included),
  as :func:`sandbox.models.portable.predict` reads them: the numbers the checks judged
  and an export writes.

The rows are read by numpy on the executors (``mapInArrow``, as the SQL engine folds
entity bitmaps: nothing an operator's SQL can call), one pass whatever the model's size,
and Spark sums what each batch found; a cluster's executors need the platform's
package. The frames hold one row per entity with the features as doubles in columns
named by ``columns`` (a missing value already 0).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from jobs.model_checks import FittedArrays, TreeArrays


def tree_arrays(root: Any, value_of: Callable[[Any], float]) -> tuple[TreeArrays, list[float]]:
    """One MLlib tree (its Java root node) as arrays, numbered in pre-order (a child
    after its parent, as :func:`sandbox.models.fit.arrays_from_json` wants), and each
    node's value."""
    left: list[int] = []
    right: list[int] = []
    feature: list[int] = []
    threshold: list[float] = []
    entities: list[int] = []
    values: list[float] = []
    stack: list[tuple[Any, int, list[int] | None]] = [(root, -1, None)]
    while stack:
        node, parent, side = stack.pop()
        i = len(entities)
        if side is not None:
            side[parent] = i
        entities.append(int(node.impurityStats().rawCount()))
        values.append(float(value_of(node)))
        left.append(-1)
        right.append(-1)
        if node.numDescendants() > 0:
            split = node.split()
            feature.append(int(split.featureIndex()))
            threshold.append(float(split.threshold()))
            stack.append((node.rightChild(), i, right))
            stack.append((node.leftChild(), i, left))
        else:
            feature.append(-2)
            threshold.append(-2.0)
    tree = TreeArrays(
        children_left=np.asarray(left, dtype=np.int64),
        children_right=np.asarray(right, dtype=np.int64),
        feature=np.asarray(feature, dtype=np.int64),
        threshold=np.asarray(threshold, dtype=float),
        entities=np.asarray(entities, dtype=np.int64),
    )
    return tree, values


def _contribution(factor: float) -> Callable[[Any], float]:
    """A node's value: its prediction (a regression tree's mean label) times ``factor``."""

    def value(node: Any) -> float:
        return factor * float(node.prediction())

    return value


def fitted_arrays(
    model: Any, algorithm: str, n_train: int, n_features: int
) -> tuple[FittedArrays, dict[str, Any]]:
    """The arrays the structural checks read of a fitted MLlib model, and its outputs."""
    if algorithm == "logistic_regression":
        coef = np.asarray(model.coefficients.toArray(), dtype=float)
        intercept = np.asarray([float(model.intercept)])
        fitted = FittedArrays(algorithm, n_train, n_features, coef=coef, intercept=intercept)
        return fitted, {"values": [], "baseline": 0.0}
    if algorithm == "decision_tree":  # a regression tree on the 0/1 label (spark_fit)
        tree, values = tree_arrays(model._java_obj.rootNode(), _contribution(1.0))
        fitted = FittedArrays(algorithm, n_train, n_features, trees=(tree,))
        return fitted, {"values": [values], "baseline": 0.0}
    trees, all_values = [], []
    for weight, member in zip(model.treeWeights, model.trees, strict=True):
        tree, values = tree_arrays(member._java_obj.rootNode(), _contribution(2.0 * weight))
        trees.append(tree)
        all_values.append(values)
    fitted = FittedArrays(algorithm, n_train, n_features, trees=tuple(trees))
    return fitted, {"values": all_values, "baseline": 0.0}


def _held_batches(batches, columns, pairs, values):
    """On the executors, per batch of rows: for each asked split point ``(f, t)`` (its
    index ``i``) the rows holding ``t`` in column ``f`` and the smallest value above
    ``t``; for each asked value (indices after the pairs) the cells holding it in any
    column. Sorted columns and binary search: one pass, whatever the model's size."""
    import pyarrow as pa

    for batch in batches:
        ids: list[np.ndarray] = []
        held: list[np.ndarray] = []
        larger: list[np.ndarray] = []
        sorted_columns = {}
        for f, c in enumerate(columns):
            sorted_columns[f] = np.sort(batch.column(c).to_numpy(zero_copy_only=False))
        for f in {f for f, _ in pairs}:
            wanted = [(i, t) for i, (g, t) in enumerate(pairs) if g == f]
            at = np.array([t for _, t in wanted])
            column = sorted_columns[f]
            low = np.searchsorted(column, at, "left")
            high = np.searchsorted(column, at, "right")
            above = np.full(at.size, np.nan)
            if column.size:
                inside = high < column.size
                above[inside] = column[high[inside]]
            ids.append(np.array([i for i, _ in wanted], dtype=np.int64))
            held.append((high - low).astype(np.int64))
            larger.append(above)
        if values:
            cells = np.sort(np.concatenate([sorted_columns[f] for f in range(len(columns))]))
            at = np.asarray(values, dtype=float)
            count = np.searchsorted(cells, at, "right") - np.searchsorted(cells, at, "left")
            ids.append(np.arange(len(pairs), len(pairs) + at.size, dtype=np.int64))
            held.append(count.astype(np.int64))
            larger.append(np.full(at.size, np.nan))
        if not ids:
            continue
        gap = np.concatenate(larger)
        yield pa.RecordBatch.from_arrays(
            [
                pa.array(np.concatenate(ids)),
                pa.array(np.concatenate(held)),
                pa.array(gap, mask=np.isnan(gap)),
            ],
            names=["i", "held", "larger"],
        )


def _held(
    frame: Any,
    columns: Sequence[str],
    pairs: Sequence[tuple[int, float]],
    values: Sequence[float] = (),
) -> tuple[list[int], list[float | None]]:
    """:func:`_held_batches` summed over the rows of ``frame`` by Spark: for each pair
    and then each value, the training entities holding it and (pairs) the smallest
    training value above it, or None."""
    from pyspark.sql import functions as F

    if not pairs and not values:
        return [], []
    task = functools.partial(
        _held_batches, columns=list(columns), pairs=list(pairs), values=list(values)
    )
    partial = frame.select(*columns).mapInArrow(task, "i long, held long, larger double")
    rows = partial.groupBy("i").agg(F.sum("held").alias("held"), F.min("larger").alias("larger"))
    found = {int(r["i"]): (int(r["held"]), r["larger"]) for r in rows.collect()}
    n = len(pairs) + len(values)
    held = [found.get(i, (0, None))[0] for i in range(n)]
    larger = [found.get(i, (0, None))[1] for i in range(n)]
    return held, larger


def off_the_data(frame: Any, columns: Sequence[str], fitted: FittedArrays) -> FittedArrays:
    """The trees with each split point that equals a training value moved to the
    midpoint towards the next larger training value of its feature (see the module)."""
    features, thresholds = fitted.split_points()
    pairs = sorted({(int(f), float(t)) for f, t in zip(features, thresholds, strict=True)})
    held, larger = _held(frame, columns, pairs)
    moved: dict[tuple[int, float], float] = {}
    for (f, t), count, above in zip(pairs, held, larger, strict=True):
        if count and above is not None:
            moved[f, t] = (t + float(above)) / 2
    if not moved:
        return fitted
    trees = []
    for tree in fitted.trees:
        threshold = tree.threshold.copy()
        for i in tree.splits():
            threshold[i] = moved.get((int(tree.feature[i]), float(threshold[i])), threshold[i])
        trees.append(TreeArrays(**{**tree.__dict__, "threshold": threshold}))
    return dataclasses.replace(fitted, trees=tuple(trees))


def rare_parameters(frame: Any, columns: Sequence[str], fitted: FittedArrays, k: int) -> int:
    """:func:`jobs.model_checks.rare_value_parameters` over the rows of ``frame``: how
    many parameters equal a value that 1 to ``k - 1`` training entities hold (a split
    point against its feature's column, a coefficient or intercept against every one)."""
    features, thresholds = fitted.split_points()
    splits = [(int(f), float(t)) for f, t in zip(features, thresholds, strict=True)]
    values = [float(v) for v in np.concatenate([fitted.coef.ravel(), fitted.intercept.ravel()])]
    asked = sorted(set(splits))  # each split point and value counted once
    distinct = sorted({v for v in values if not np.isnan(v)})  # NaN: no entity holds it
    held, _ = _held(frame, columns, asked, distinct)
    by_split = dict(zip(asked, held[: len(asked)], strict=True))
    by_value = dict(zip(distinct, held[len(asked) :], strict=True))
    found = [by_split[s] for s in splits] + [by_value.get(v, 0) for v in values]
    return sum(int(0 < c < k) for c in found)


def _score_batches(batches, key, columns, description):
    """On the executors: each row's probability of label 1 by the model's arrays."""
    import pyarrow as pa

    from sandbox.models import portable

    for batch in batches:
        x = np.column_stack([batch.column(c).to_numpy(zero_copy_only=False) for c in columns])
        score = portable.predict(description, x.reshape(batch.num_rows, len(columns)))
        yield pa.RecordBatch.from_arrays(
            [batch.column(key), pa.array(score, pa.float64())], names=[key, "score"]
        )


def score_rows(frame: Any, key: str, columns: Sequence[str], arrays: Mapping[str, Any]) -> Any:
    """Every row of ``frame`` scored by the model of ``arrays`` (the numbers the checks
    judged, as :func:`sandbox.models.portable.predict` reads them, on the executors):
    a frame of ``key`` (a long) and ``score``."""
    from sandbox.models import portable

    description = {"format": portable.FORMAT, "model": dict(arrays)}
    task = functools.partial(
        _score_batches, key=key, columns=list(columns), description=description
    )
    return frame.select(key, *columns).mapInArrow(task, f"{key} long, score double")
