"""Fitting with scikit-learn or LightGBM, the fitted model as arrays, and the held-out
evaluation.

Runs inside the model worker (``sandbox.models.worker``) and in tests. The four
algorithms of :data:`jobs.model.ALGORITHMS`:

* ``logistic_regression``: standardised features, then ``LogisticRegression``; its
  coefficients are judged in the features' own units (divided by the scale);
* ``decision_tree``: ``DecisionTreeClassifier``;
* ``gradient_boosting``: ``HistGradientBoostingClassifier`` (binned features, fast
  enough for a million entities; no early stopping, so a run is reproducible). Its
  trees are read from the fitted estimator's ``_predictors`` (a private attribute of
  scikit-learn; the version is pinned by setup.cfg's lower bound and the tests read it).
* ``lightgbm``: ``lightgbm.LGBMClassifier`` (:class:`LightGBMTrees`), deterministic; its
  trees are read from the booster's ``dump_model()`` into the same arrays, and the model
  answers from those arrays, so its scores, its checks and its export are one model.

Missing feature values (a LEFT JOIN without rows) count as 0: say ``COALESCE`` in the
features query for anything else.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
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
    if algorithm == "lightgbm":
        return LightGBMTrees(params, seed)
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
    if algorithm == "lightgbm":
        return FittedArrays(algorithm, n_train, n_features, trees=model.trees)
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
    if algorithm == "lightgbm":  # the first tree's leaves hold LightGBM's starting score
        return {"values": [v.tolist() for v in model.values], "baseline": 0.0}
    return {"values": [], "baseline": 0.0}


# --------------------------------------------------------------------------- LightGBM


def _threads() -> int:
    """The worker's threads (setting ``job.threads``, which the worker puts in
    ``OMP_NUM_THREADS`` before fitting), 1 elsewhere. LightGBM's trees do not depend on it:
    deterministic and row-wise, one thread or many build the same trees."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, int(value)) if value.isdigit() else 1


class LightGBMTrees:
    """LightGBM's gradient boosting as the platform holds it: fitted with
    ``LGBMClassifier``, then read into :class:`TreeArrays` (:func:`lightgbm_trees`), its
    split points moved off the data (:func:`off_the_data`); it answers from those arrays
    (:meth:`predict_proba`), the numbers the checks judge and an export writes.

    Leaves of at least ``min_samples_leaf`` entities: LightGBM's ``min_child_samples``
    counts a candidate leaf's entities from its share of the hessian, an estimate that
    lets leaves of a few entities through; under the logistic loss an entity's hessian is
    at most 1/4, so ``min_sum_hessian_in_leaf`` of ``min_samples_leaf / 4`` bounds the
    true count. ``min_data_in_bin`` asks as many entities of each bin of the histogram,
    whose edges are the candidate split points. Missing values are 0 (``use_missing``
    off), as for the other algorithms; no bagging, no column sampling."""

    def __init__(self, params: Mapping[str, float], seed: int) -> None:
        self.params = dict(params)
        self.seed = seed
        self.trees: tuple[TreeArrays, ...] = ()
        self.values: tuple[np.ndarray, ...] = ()

    def estimator(self) -> Any:
        import lightgbm

        leaf = int(self.params["min_samples_leaf"])
        return lightgbm.LGBMClassifier(
            n_estimators=int(self.params["n_estimators"]),
            max_depth=int(self.params["max_depth"]),
            num_leaves=int(self.params["num_leaves"]),
            learning_rate=float(self.params["learning_rate"]),
            min_child_samples=leaf,
            min_sum_hessian_in_leaf=leaf / 4,
            min_data_in_bin=leaf,
            use_missing=False,
            deterministic=True,
            force_row_wise=True,
            n_jobs=_threads(),
            random_state=self.seed,
            verbose=-1,
        )

    def fit(self, x: np.ndarray, y: np.ndarray) -> LightGBMTrees:
        booster = self.estimator().fit(x, y).booster_
        trees, values = lightgbm_trees(booster.dump_model())
        self.trees, self.values = off_the_data(trees, x), tuple(values)
        return self

    def raw_score(self, x: np.ndarray) -> np.ndarray:
        """The sum of each row's leaf values over the trees: LightGBM's raw score."""
        x = np.nan_to_num(np.asarray(x, dtype=float))  # missing is 0, as in training
        raw = np.zeros(x.shape[0])
        for tree, value in zip(self.trees, self.values, strict=True):
            raw += value[leaf_of(tree, x)]
        return raw

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.raw_score(x)))
        return np.column_stack([1.0 - p, p])


def lightgbm_trees(dump: Mapping[str, Any]) -> tuple[list[TreeArrays], list[np.ndarray]]:
    """A binary LightGBM booster's ``dump_model()`` as arrays: each tree's nodes numbered
    depth first (a child after its parent, as scikit-learn numbers them), the training
    entities per node (``internal_count``, ``leaf_count``) and each leaf's value (learning
    rate applied; the first tree's include the starting score)."""
    if dump.get("num_tree_per_iteration", 1) != 1 or not str(dump.get("objective")).startswith(
        "binary"
    ):
        raise ValueError("not a binary LightGBM model")
    trees, values = [], []
    for info in dump["tree_info"]:
        nodes: list = []
        _lightgbm_node(info["tree_structure"], nodes)
        table = np.array(nodes, dtype=float)  # whole numbers below 2**53 stay exact
        trees.append(
            TreeArrays(
                children_left=table[:, 0].astype(np.int64),
                children_right=table[:, 1].astype(np.int64),
                feature=table[:, 2].astype(np.int64),
                threshold=table[:, 3],
                entities=table[:, 4].astype(np.int64),
            )
        )
        values.append(table[:, 5])
    return trees, values


def _lightgbm_node(node: Mapping[str, Any], nodes: list) -> int:
    """Append ``node`` and its subtree to ``nodes`` (left, right, feature, threshold,
    entities, value); its number."""
    at = len(nodes)
    if "split_index" not in node:  # a leaf (a tree of one leaf has no leaf_index either)
        nodes.append((-1, -1, -2, -2.0, int(node["leaf_count"]), float(node["leaf_value"])))
        return at
    if node["decision_type"] != "<=":
        raise ValueError("a LightGBM split that is not 'value <= threshold'")
    nodes.append(None)
    left = _lightgbm_node(node["left_child"], nodes)
    right = _lightgbm_node(node["right_child"], nodes)
    feature, threshold = int(node["split_feature"]), float(node["threshold"])
    nodes[at] = (left, right, feature, threshold, int(node["internal_count"]), 0.0)
    return at


def off_the_data(trees: Sequence[TreeArrays], x: np.ndarray) -> tuple[TreeArrays, ...]:
    """The trees with every split point that is a training value of its feature moved to
    the midpoint between it and the next larger one, as :func:`_off_the_data` does for
    scikit-learn's boosting: every training entity goes the same way as before (``<=``),
    and no split point is a value (rule ``parameter_value``). LightGBM splits between bins
    already; a bin built from a sample of a large population may end on a value."""
    columns = [np.unique(x[:, f]) for f in range(x.shape[1])]
    out = []
    for tree in trees:
        threshold = tree.threshold.copy()
        for i in tree.splits():
            values = columns[int(tree.feature[i])]
            t = float(threshold[i])
            j = int(np.searchsorted(values, t, side="right"))
            if 0 < j < values.size and values[j - 1] == t:
                threshold[i] = (t + float(values[j])) / 2
        out.append(dataclasses.replace(tree, threshold=threshold))
    return tuple(out)


def leaf_of(tree: TreeArrays, x: np.ndarray) -> np.ndarray:
    """The leaf each row of ``x`` reaches: left when its value is at most the split point."""
    node = np.zeros(x.shape[0], dtype=np.int64)
    for _ in range(tree.children_left.size):  # children come after parents
        inner = np.flatnonzero(tree.children_left[node] >= 0)
        if inner.size == 0:
            break
        at = node[inner]
        goes_left = x[inner, tree.feature[at]] <= tree.threshold[at]
        node[inner] = np.where(goes_left, tree.children_left[at], tree.children_right[at])
    return node


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
