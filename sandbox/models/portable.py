"""A passed model in portable forms a consumer can load without running our code.

An export (:mod:`sandbox.models.export`) writes the model twice, from the same numbers:

* ``model.onnx``: ONNX (the open format of the Linux Foundation's LF AI & Data, read by
  ONNX Runtime and most machine-learning stacks). It is written here with ``onnx``'s
  own helpers from the checked arrays, not converted by ``skl2onnx`` from the fitted
  estimator: the estimator lives only in the training worker, and the file that leaves
  must be the model that was judged, number for number. A tree model is one
  ``TreeEnsembleRegressor`` (``ai.onnx.ml``; a boosted model's leaves summed from its
  baseline, then ``Sigmoid``), a regression ``MatMul``, ``Add`` and
  ``Sigmoid``. Input ``features``: doubles, one row per entity, the card's features in
  order (a missing value is 0, as in training); output ``score``: the probability of
  label 1, float.
* ``model.json``: the same model as plain JSON (:func:`describe`), for a consumer
  without ONNX: a tree's children, split features, thresholds, entities and node values,
  or a regression's coefficients and intercept in the features' own units.
  :func:`predict` is a loader of a few lines of numpy. The canonical JSON of its
  ``model`` member hashes to the card's ``model_sha256``.

A pickle or joblib file is not offered: loading one runs code, so a consumer could not
open it safely.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from sandbox.core.ledger import canonical
from sandbox.models.fit import arrays_from_json

FORMAT = "sandbox-model/1"
OPSET = 15  # ONNX Runtime 1.10 (2021) and later read it
ML_OPSET = 3  # TreeEnsembleRegressor with double thresholds and weights
IR_VERSION = 8
# Boosted trees: a raw score, the baseline plus every tree's leaf, then the sigmoid
# (LightGBM's baseline is 0: its first tree's leaves hold its starting score).
BOOSTED = frozenset({"gradient_boosting", "lightgbm"})


def describe(card: Mapping[str, Any], arrays: Mapping[str, Any]) -> dict[str, Any]:
    """``model.json``: what the model reads and answers, and its numbers (``model``)."""
    return {
        "format": FORMAT,
        "name": card["name"],
        "algorithm": card["algorithm"],
        "features": list(card["features"]),
        "label": card["label"],
        "missing": 0,
        "score": "the probability that the label is 1",
        "model_sha256": card["model_sha256"],
        "model": dict(arrays),
    }


def model_sha256(arrays: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical(dict(arrays))).hexdigest()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=float)


def _leaf_values(tree: Mapping[str, Any], x: np.ndarray) -> np.ndarray:
    left = np.asarray(tree["children_left"], dtype=np.int64)
    right = np.asarray(tree["children_right"], dtype=np.int64)
    feature = np.asarray(tree["feature"], dtype=np.int64)
    threshold = np.asarray(tree["threshold"], dtype=float)
    node = np.zeros(x.shape[0], dtype=np.int64)
    rows = np.arange(x.shape[0])
    for _ in range(left.size):  # children come after parents: at most one step per node
        inner = left[node] != -1
        if not inner.any():
            break
        at = node[inner]
        goes_left = x[rows[inner], feature[at]] <= threshold[at]
        node[inner] = np.where(goes_left, left[at], right[at])
    return np.asarray(tree["value"], dtype=float)[node]


def predict(description: Mapping[str, Any], x: np.ndarray) -> np.ndarray:
    """The probability of label 1 for each row of ``x`` (features in the description's
    order, missing values as 0), from ``model.json`` alone."""
    if description.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} model")
    model = description["model"]
    arrays_from_json(model)  # shapes and children checked before anything is read
    x = np.nan_to_num(np.asarray(x, dtype=float).reshape(-1, int(model["n_features"])))
    if model["algorithm"] == "logistic_regression":
        coef = np.asarray(model["coef"], dtype=float)
        return _sigmoid(x @ coef + float(model["intercept"][0]))
    leaves = np.zeros(x.shape[0])
    for tree in model["trees"]:
        leaves += _leaf_values(tree, x)
    if model["algorithm"] == "decision_tree":
        return leaves
    return _sigmoid(float(model["baseline"]) + leaves)


# --------------------------------------------------------------------------- ONNX


def to_onnx(description: Mapping[str, Any]) -> bytes:
    """``model.onnx`` from the description (see the module)."""
    from onnx import TensorProto, helper

    model = description["model"]
    n = int(model["n_features"])
    features = helper.make_tensor_value_info("features", TensorProto.DOUBLE, [None, n])
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, [None, 1])
    if model["algorithm"] == "logistic_regression":
        nodes, initial = _linear_nodes(model)
    elif model["algorithm"] in BOOSTED:
        sigmoid = helper.make_node("Sigmoid", ["raw"], ["score"])
        nodes, initial = [_tree_node(model, "raw"), sigmoid], []
    else:
        nodes, initial = [_tree_node(model, "score")], []
    graph = helper.make_graph(
        nodes, str(description["name"]), [features], [score], initializer=initial
    )
    onnx_model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid("ai.onnx.ml", ML_OPSET)],
        producer_name="jining-sandbox",
        doc_string=f"{description['name']}: {description['score']}; features "
        + ", ".join(description["features"]),
    )
    onnx_model.ir_version = IR_VERSION
    meta = {"format": FORMAT, "model_sha256": description["model_sha256"]}
    helper.set_model_props(onnx_model, meta)
    return bytes(onnx_model.SerializeToString())


def _linear_nodes(model: Mapping[str, Any]) -> tuple[list, list]:
    from onnx import TensorProto, helper

    coef = [float(c) for c in model["coef"]]
    weights = helper.make_tensor("coef", TensorProto.DOUBLE, [len(coef), 1], coef)
    bias = helper.make_tensor("intercept", TensorProto.DOUBLE, [1], [float(model["intercept"][0])])
    nodes = [
        helper.make_node("MatMul", ["features", "coef"], ["linear"]),
        helper.make_node("Add", ["linear", "intercept"], ["raw"]),
        helper.make_node("Sigmoid", ["raw"], ["probability"]),
        helper.make_node("Cast", ["probability"], ["score"], to=TensorProto.FLOAT),
    ]
    return nodes, [weights, bias]


def _tree_node(model: Mapping[str, Any], output: str):
    from onnx import TensorProto, helper

    tree_ids, node_ids, features, modes, true_ids, false_ids = [], [], [], [], [], []
    thresholds: list[float] = []
    leaf_tree, leaf_node, leaf_value = [], [], []
    for t, tree in enumerate(model["trees"]):
        for i, left in enumerate(tree["children_left"]):
            leaf = int(left) == -1
            tree_ids.append(t)
            node_ids.append(i)
            features.append(0 if leaf else int(tree["feature"][i]))
            modes.append("LEAF" if leaf else "BRANCH_LEQ")
            thresholds.append(0.0 if leaf else float(tree["threshold"][i]))
            true_ids.append(0 if leaf else int(left))
            false_ids.append(0 if leaf else int(tree["children_right"][i]))
            if leaf:
                leaf_tree.append(t)
                leaf_node.append(i)
                leaf_value.append(float(tree["value"][i]))
    boosted = model["algorithm"] in BOOSTED
    return helper.make_node(
        "TreeEnsembleRegressor",
        ["features"],
        [output],
        domain="ai.onnx.ml",
        n_targets=1,
        aggregate_function="SUM",
        post_transform="NONE",
        base_values_as_tensor=helper.make_tensor(
            "base", TensorProto.DOUBLE, [1], [float(model.get("baseline", 0.0)) if boosted else 0.0]
        ),
        nodes_treeids=tree_ids,
        nodes_nodeids=node_ids,
        nodes_featureids=features,
        nodes_modes=modes,
        nodes_values_as_tensor=helper.make_tensor(
            "thresholds", TensorProto.DOUBLE, [len(thresholds)], thresholds
        ),
        nodes_truenodeids=true_ids,
        nodes_falsenodeids=false_ids,
        target_treeids=leaf_tree,
        target_nodeids=leaf_node,
        target_ids=[0] * len(leaf_node),
        target_weights_as_tensor=helper.make_tensor(
            "weights", TensorProto.DOUBLE, [len(leaf_value)], leaf_value
        ),
    )
