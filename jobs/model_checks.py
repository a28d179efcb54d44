"""Judging a fitted model before anything of it is used: pure functions over its arrays.

The approach is SACRO-ML's (the disclosure checker for trained models of the UK's
SACRO project), written here with numpy over the fitted model's arrays because its
package needs torch and xgboost: a model is a release of its training data, so it is
checked like one.

* **Structural checks** (:func:`check_structure`), from the model's own arrays:
  ``leaf_entities``: every leaf of every tree holds at least the disclosure threshold
  of training entities (k-anonymity of the model's equivalence classes);
  ``tree_depth``: no tree deeper than the platform's limit; ``degrees_of_freedom``:
  training entities minus the model's parameters (coefficients and intercept, or
  leaves) is at least the threshold, so a regression cannot interpolate its rows;
  ``parameter_value``: no parameter (a split threshold, a coefficient, an intercept)
  equals a value that fewer than the threshold of entities hold (one entity's
  capital stored as a split point is that entity's capital).
* **Membership inference** (:func:`judge_attacks`): the figures of simulated attacks
  run in the worker (``sandbox.models.attacks``): the worst case, an attack model
  trained on the target's confidences for known members and non-members; and
  LiRA (the likelihood-ratio attack) with shadow models. A model whose attack AUC
  exceeds the risk threshold tells who was in its training data: refused.

Each check returns a :class:`Finding` with its figure, its limit and a sentence that
names no value of the data. The verdict is :class:`ModelVerdict`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import numpy.typing as npt

ARTICLE = "Art. 15"

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class ModelVerdict(StrEnum):
    PASSED = "passed"
    REFUSED = "refused"


@dataclass(frozen=True)
class Finding:
    """One check: its rule, whether it passed, its figure against its limit, why."""

    rule: str
    passed: bool
    figure: float
    limit: float
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "passed": self.passed,
            "figure": self.figure,
            "limit": self.limit,
            "message": self.message,
        }


@dataclass(frozen=True)
class TreeArrays:
    """One fitted tree as scikit-learn's ``tree_`` holds it: children (-1 at a leaf),
    the feature and threshold of each split, and the training entities per node."""

    children_left: IntArray
    children_right: IntArray
    feature: IntArray
    threshold: FloatArray
    entities: IntArray

    @property
    def leaves(self) -> IntArray:
        return np.flatnonzero(self.children_left < 0)

    def depth(self) -> int:
        """The longest path from the root to a leaf, in splits."""
        deepest, stack = 0, [(0, 0)]
        while stack:
            node, level = stack.pop()
            left = int(self.children_left[node])
            if left < 0:
                deepest = max(deepest, level)
                continue
            stack.append((left, level + 1))
            stack.append((int(self.children_right[node]), level + 1))
        return deepest

    def splits(self) -> IntArray:
        return np.flatnonzero(self.children_left >= 0)


@dataclass(frozen=True)
class FittedArrays:
    """Everything the structural checks read of a fitted model."""

    algorithm: str
    n_train: int
    n_features: int
    trees: tuple[TreeArrays, ...] = ()
    coef: FloatArray = field(default_factory=lambda: np.zeros(0))
    intercept: FloatArray = field(default_factory=lambda: np.zeros(0))

    def parameters(self) -> int:
        """The model's free parameters: coefficients and intercepts, or leaves."""
        leaves = sum(int(t.leaves.size) for t in self.trees)
        return int(self.coef.size + self.intercept.size) + leaves

    def split_points(self) -> tuple[IntArray, FloatArray]:
        """Every split as (feature, threshold), over all trees."""
        if not self.trees:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        feats = [t.feature[t.splits()] for t in self.trees]
        thresholds = [t.threshold[t.splits()] for t in self.trees]
        return np.concatenate(feats).astype(np.int64), np.concatenate(thresholds)


@dataclass(frozen=True)
class StructuralLimits:
    """The platform's limits: settings ``model.*`` and the disclosure threshold."""

    min_entities: int = 10
    max_depth: int = 8


def rare_value_parameters(model: FittedArrays, x: FloatArray, min_entities: int) -> int:
    """How many of the model's parameters equal a value that 1 to ``min_entities - 1``
    training entities hold: split thresholds against their feature's column, the
    coefficients and intercepts against every column. Run where the rows are (the
    worker); its count goes to :func:`check_structure`."""
    rare = 0
    features, thresholds = model.split_points()
    for f, t in zip(features, thresholds, strict=True):
        held = int(np.count_nonzero(x[:, int(f)] == t))
        rare += int(0 < held < min_entities)
    for value in np.concatenate([model.coef.ravel(), model.intercept.ravel()]):
        held = int(np.count_nonzero(x == value))
        rare += int(0 < held < min_entities)
    return rare


def check_structure(
    model: FittedArrays, limits: StructuralLimits, rare_parameters: int
) -> list[Finding]:
    """The structural checks (see the module); ``rare_parameters`` is
    :func:`rare_value_parameters` of the training rows."""
    k = limits.min_entities
    findings = []
    if model.trees:
        smallest = min(int(t.entities[t.leaves].min()) for t in model.trees)
        findings.append(
            Finding(
                "leaf_entities",
                smallest >= k,
                smallest,
                k,
                f"the smallest leaf holds {smallest} training entities; each must hold at "
                f"least {k}, or its score is a few entities' labels",
            )
        )
        depth = max(t.depth() for t in model.trees)
        findings.append(
            Finding(
                "tree_depth",
                depth <= limits.max_depth,
                depth,
                limits.max_depth,
                f"the deepest tree has {depth} levels of splits; at most {limits.max_depth}",
            )
        )
    dof = model.n_train - model.parameters()
    findings.append(
        Finding(
            "degrees_of_freedom",
            dof >= k,
            dof,
            k,
            f"{model.n_train} training entities for {model.parameters()} parameters leave "
            f"{dof} degrees of freedom; at least {k}",
        )
    )
    findings.append(
        Finding(
            "parameter_value",
            rare_parameters == 0,
            rare_parameters,
            0,
            f"{rare_parameters} parameters equal a value held by fewer than {k} training entities",
        )
    )
    return findings


@dataclass(frozen=True)
class AttackFigures:
    """What the simulated membership-inference attacks achieved (run in the worker)."""

    worst_case_auc: float
    worst_case_advantage: float  # max over thresholds of TPR - FPR
    lira_auc: float
    lira_tpr_at_fpr_01: float  # the attack's hits when it may wrongly accuse 1 in 10
    shadow_models: int
    members: int  # training entities attacked (as many non-members from the held-out split)

    def to_dict(self) -> dict[str, Any]:
        return {
            "worst_case_auc": self.worst_case_auc,
            "worst_case_advantage": self.worst_case_advantage,
            "lira_auc": self.lira_auc,
            "lira_tpr_at_fpr_01": self.lira_tpr_at_fpr_01,
            "shadow_models": self.shadow_models,
            "members": self.members,
        }


def judge_attacks(figures: AttackFigures, max_auc: float) -> list[Finding]:
    """Each attack's AUC against the risk threshold (setting ``model.attack_max_auc``):
    0.5 is a coin; above the threshold the model tells its members apart."""
    return [
        Finding(
            "attack_worst_case",
            figures.worst_case_auc <= max_auc,
            round(figures.worst_case_auc, 4),
            max_auc,
            f"an attack model told training members from held-out entities with AUC "
            f"{figures.worst_case_auc:.3f}; at most {max_auc}",
        ),
        Finding(
            "attack_lira",
            figures.lira_auc <= max_auc,
            round(figures.lira_auc, 4),
            max_auc,
            f"the likelihood-ratio attack with {figures.shadow_models} shadow models reached "
            f"AUC {figures.lira_auc:.3f}; at most {max_auc}",
        ),
    ]


def verdict_of(findings: Sequence[Finding]) -> ModelVerdict:
    return ModelVerdict.PASSED if all(f.passed for f in findings) else ModelVerdict.REFUSED
