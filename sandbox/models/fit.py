"""Fitting with scikit-learn, the fitted model as arrays, and the held-out evaluation.

Runs inside the model worker (``sandbox.models.worker``) and in tests. The three
algorithms of :data:`jobs.model.ALGORITHMS`:

* ``logistic_regression``: standardised features, then ``LogisticRegression``; its
  coefficients are judged in the features' own units (divided by the scale);
* ``decision_tree``: ``DecisionTreeClassifier``;
* ``gradient_boosting``: ``HistGradientBoostingClassifier`` (binned features, fast
  enough for a million entities; no early stopping, so a run is reproducible). Its
  trees are read from the fitted estimator's ``_predictors`` (a private attribute of
  scikit-learn; the version is pinned by setup.cfg's lower bound and the tests read it).

Missing feature values (a LEFT JOIN without rows) count as 0: say ``COALESCE`` in the
features query for anything else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from jobs.model_checks import FittedArrays, TreeArrays


def make_estimator(algorithm: str, params: Mapping[str, float], seed: int) -> Any:
    """A fresh, unfitted estimator for the (already admitted) algorithm and parameters."""
    if algorithm == "logistic_regression":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = LogisticRegression(C=float(params["C"]), max_iter=int(params["max_iter"]))
        return make_pipeline(StandardScaler(), model)
    if algorithm == "decision_tree":
        from sklearn.tree import DecisionTreeClassifier

        return DecisionTreeClassifier(
            max_depth=int(params["max_depth"]),
            min_samples_leaf=int(params["min_samples_leaf"]),
            random_state=seed,
        )
    if algorithm == "gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=int(params["n_estimators"]),
            max_depth=int(params["max_depth"]),
            learning_rate=float(params["learning_rate"]),
            min_samples_leaf=int(params["min_samples_leaf"]),
            early_stopping=False,
            random_state=seed,
        )
    raise ValueError(f"unknown algorithm {algorithm}")  # admission keeps this unreachable


def fit(algorithm: str, params: Mapping[str, float], seed: int, x: np.ndarray, y: np.ndarray):
    """Fit the estimator; a boosted model's split points are then moved off the data
    (:func:`_off_the_data`)."""
    model = make_estimator(algorithm, params, seed).fit(x, y)
    if algorithm == "gradient_boosting":
        _off_the_data(model, x)
    return model


def _off_the_data(model: Any, x: np.ndarray) -> None:
    """Histogram boosting splits at quantiles of the training values, which may be a
    value a few entities hold (rule ``parameter_value``). Each split point moves to the
    midpoint between it and the next larger training value of its feature: every
    training entity goes the same way as before, and no split point is a value."""
    columns = [np.unique(x[:, f]) for f in range(x.shape[1])]
    for predictors in model._predictors:
        nodes = predictors[0].nodes
        for i in np.flatnonzero(nodes["is_leaf"] == 0):
            values = columns[int(nodes["feature_idx"][i])]
            t = float(nodes["num_threshold"][i])
            j = int(np.searchsorted(values, t, side="right"))
            if j < values.size and j > 0 and values[j - 1] == t:
                nodes["num_threshold"][i] = (t + float(values[j])) / 2


def arrays_of(model: Any, algorithm: str, n_train: int, n_features: int) -> FittedArrays:
    """What the structural checks read of a fitted estimator."""
    if algorithm == "logistic_regression":
        scaler, lr = model[0], model[-1]
        scale = np.where(scaler.scale_ == 0, 1.0, scaler.scale_)
        coef = np.asarray(lr.coef_, dtype=float).ravel() / scale
        intercept = np.asarray(lr.intercept_, dtype=float) - float(
            np.sum(lr.coef_.ravel() * scaler.mean_ / scale)
        )
        return FittedArrays(algorithm, n_train, n_features, coef=coef, intercept=intercept)
    if algorithm == "decision_tree":
        return FittedArrays(algorithm, n_train, n_features, trees=(_sk_tree(model.tree_),))
    trees = tuple(_hist_tree(p[0].nodes) for p in model._predictors)
    return FittedArrays(algorithm, n_train, n_features, trees=trees)


def _sk_tree(tree: Any) -> TreeArrays:
    return TreeArrays(
        children_left=np.asarray(tree.children_left, dtype=np.int64),
        children_right=np.asarray(tree.children_right, dtype=np.int64),
        feature=np.asarray(tree.feature, dtype=np.int64),
        threshold=np.asarray(tree.threshold, dtype=float),
        entities=np.asarray(tree.n_node_samples, dtype=np.int64),
    )


def _hist_tree(nodes: Any) -> TreeArrays:
    leaf = nodes["is_leaf"].astype(bool)
    left = nodes["left"].astype(np.int64)
    right = nodes["right"].astype(np.int64)
    return TreeArrays(
        children_left=np.where(leaf, -1, left),
        children_right=np.where(leaf, -1, right),
        feature=np.where(leaf, -2, nodes["feature_idx"].astype(np.int64)),
        threshold=np.where(leaf, -2.0, nodes["num_threshold"].astype(float)),
        entities=nodes["count"].astype(np.int64),
    )


def outputs_of(model: Any, algorithm: str) -> dict[str, Any]:
    """What a tree model answers beyond its structure, for the export of a passed model
    (:mod:`sandbox.models.portable`): each node's ``value`` (a decision tree's share of
    label 1 among the node's training entities; a boosted tree's raw contribution, the
    learning rate applied, at its leaves) and a boosted model's ``baseline`` (its raw
    score before the first tree). A regression's coefficients are all it has."""
    if algorithm == "decision_tree":
        value = np.asarray(model.tree_.value, dtype=float)[:, 0, :]
        total = value.sum(axis=1)
        share = np.divide(value[:, 1], total, out=np.zeros_like(total), where=total > 0)
        return {"values": [share.tolist()], "baseline": 0.0}
    if algorithm == "gradient_boosting":
        values = [np.asarray(p[0].nodes["value"], dtype=float).tolist() for p in model._predictors]
        baseline = float(np.ravel(model._baseline_prediction)[0])
        return {"values": values, "baseline": baseline}
    return {"values": [], "baseline": 0.0}


def arrays_to_json(
    arrays: FittedArrays, outputs: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The arrays as JSON (the worker's answer carries them to the platform), with the
    tree outputs of :func:`outputs_of` when given: the card's ``model_sha256`` is the hash
    of all of it, so it covers the model an export writes."""
    values = list((outputs or {}).get("values") or [])
    out = {
        "algorithm": arrays.algorithm,
        "n_train": arrays.n_train,
        "n_features": arrays.n_features,
        "coef": arrays.coef.tolist(),
        "intercept": arrays.intercept.tolist(),
        "trees": [
            {
                "children_left": t.children_left.tolist(),
                "children_right": t.children_right.tolist(),
                "feature": t.feature.tolist(),
                "threshold": t.threshold.tolist(),
                "entities": t.entities.tolist(),
                **({"value": values[i]} if i < len(values) else {}),
            }
            for i, t in enumerate(arrays.trees)
        ],
    }
    if outputs is not None:
        out["baseline"] = float(outputs.get("baseline", 0.0))
    return out


def arrays_from_json(data: Mapping[str, Any]) -> FittedArrays:
    """The platform's reading of the worker's arrays (untrusted: shapes are checked)."""
    trees = []
    for t in data.get("trees") or []:
        parts = {
            "children_left": np.asarray(t["children_left"], dtype=np.int64),
            "children_right": np.asarray(t["children_right"], dtype=np.int64),
            "feature": np.asarray(t["feature"], dtype=np.int64),
            "threshold": np.asarray(t["threshold"], dtype=float),
            "entities": np.asarray(t["entities"], dtype=np.int64),
        }
        sizes = {v.shape for v in parts.values()}
        if len(sizes) != 1 or next(iter(sizes))[0] == 0:
            raise ValueError("a tree's arrays differ in length")
        n = parts["children_left"].size
        index = np.arange(n)
        for side in ("children_left", "children_right"):
            child = parts[side]
            if np.any(child >= n) or np.any((child != -1) & (child <= index)):
                # scikit-learn numbers a child after its parent: anything else is outside
                # the tree or a cycle (which would keep the depth check walking forever)
                raise ValueError("a tree's children point outside it or back up")
        trees.append(TreeArrays(**parts))
    return FittedArrays(
        algorithm=str(data["algorithm"]),
        n_train=int(data["n_train"]),
        n_features=int(data["n_features"]),
        trees=tuple(trees),
        coef=np.asarray(data.get("coef") or [], dtype=float),
        intercept=np.asarray(data.get("intercept") or [], dtype=float),
    )


# --------------------------------------------------------------------------- evaluation


def evaluate(y: np.ndarray, score: np.ndarray, min_entities: int) -> dict[str, Any]:
    """AUC, KS and calibration on the held-out split. Calibration is by deciles of the
    score; a decile of fewer than ``min_entities`` entities is not shown (its observed
    rate would be a few entities' labels)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    auc = float(roc_auc_score(y, score))
    fpr, tpr, _ = roc_curve(y, score)
    ks = float(np.max(tpr - fpr))
    order = np.argsort(score, kind="stable")
    bins = []
    error = 0.0
    for part in np.array_split(order, 10):
        if part.size == 0:
            continue
        predicted = float(score[part].mean())
        observed = float(y[part].mean())
        error += part.size * abs(predicted - observed)
        shown = part.size >= min_entities
        bins.append(
            {
                "entities": int(part.size) if shown else None,
                "mean_score": round(predicted, 4) if shown else None,
                "observed_rate": round(observed, 4) if shown else None,
            }
        )
    brier = float(np.mean((score - y) ** 2))
    return {
        "holdout_entities": int(y.size),
        "auc": round(auc, 4),
        "ks": round(ks, 4),
        "brier": round(brier, 4),
        "calibration_error": round(error / max(1, y.size), 4),
        "calibration": bins,
    }
