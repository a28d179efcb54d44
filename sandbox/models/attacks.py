"""Simulated membership-inference attacks on a fitted model, in the approach of SACRO-ML.

Both attacks ask: given the model's answer for an entity, can one tell whether the
entity was in its training data? Members are training entities, non-members
held-out ones, as many of each (at most ``sample`` of each, drawn at random).

* **Worst case** (:func:`worst_case`): the attacker knows which entities were members
  and trains an attack model (a small random forest) on the target model's output for
  half of them (the sorted class probabilities and the probability of the true label),
  then is scored (AUC) on the other half; repeated ``reps`` times and averaged. It is
  the strongest attacker one can simulate cheaply: a model that fails it leaks.
* **LiRA** (:func:`lira`, the likelihood-ratio attack of Carlini et al., 2022): shadow
  models are trained like the target on random halves of the attacked entities; for
  each entity the shadows that saw it and those that did not give two distributions of
  the (logit-scaled) confidence on its true label; the target's confidence is scored
  by the ratio of their likelihoods. With few shadows the variance is one global
  figure per side (the paper's fixed-variance variant). The shadows are trained on
  the attacked sample, not the whole training set: for a large population the attack
  is a sample's, which the card says.

The figures are :class:`jobs.model_checks.AttackFigures`; judging them is
:func:`jobs.model_checks.judge_attacks`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from jobs.model_checks import AttackFigures

EPS = 1e-6


def _true_confidence(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.clip(proba[np.arange(y.size), y], EPS, 1 - EPS)


def _logit(p: np.ndarray) -> np.ndarray:
    return np.log(p) - np.log1p(-p)


def worst_case(
    proba: np.ndarray, y: np.ndarray, member: np.ndarray, seed: int, reps: int = 5
) -> tuple[float, float]:
    """The worst-case attack's mean AUC and advantage (max TPR - FPR)."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.metrics import roc_auc_score, roc_curve
    from sklearn.model_selection import train_test_split

    features = np.column_stack([np.sort(proba, axis=1), _true_confidence(proba, y)])
    aucs, advantages = [], []
    for rep in range(reps):
        a_train, a_test, m_train, m_test = train_test_split(
            features, member, test_size=0.5, stratify=member, random_state=seed + rep
        )
        attack = RandomForestClassifier(
            n_estimators=50, max_depth=5, min_samples_leaf=10, random_state=seed + rep
        )
        attack.fit(a_train, m_train)
        guess = attack.predict_proba(a_test)[:, 1]
        aucs.append(roc_auc_score(m_test, guess))
        fpr, tpr, _ = roc_curve(m_test, guess)
        advantages.append(float(np.max(tpr - fpr)))
    return float(np.mean(aucs)), float(np.mean(advantages))


def lira(
    make_model: Callable[[], Any],
    x: np.ndarray,
    y: np.ndarray,
    member: np.ndarray,
    target_proba: np.ndarray,
    shadows: int,
    seed: int,
) -> tuple[float, float]:
    """LiRA's AUC and its true-positive rate at a false-positive rate of 0.1."""
    from sklearn.metrics import roc_auc_score, roc_curve

    rng = np.random.default_rng(seed)
    n = y.size
    scores = np.zeros((shadows, n))
    inside = np.zeros((shadows, n), dtype=bool)
    for s in range(shadows):
        half = rng.permutation(n)[: n // 2]
        inside[s, half] = True
        if np.unique(y[half]).size < 2:
            continue  # a degenerate half (tiny samples only): the shadow sits out
        shadow = make_model().fit(x[half], y[half])
        scores[s] = _logit(_true_confidence(shadow.predict_proba(x), y))
    target = _logit(_true_confidence(target_proba, y))
    mu_in = _mean_where(scores, inside)
    mu_out = _mean_where(scores, ~inside)
    sd_in = _spread(scores, inside, mu_in)
    sd_out = _spread(scores, ~inside, mu_out)
    ratio = _log_normal(target, mu_in, sd_in) - _log_normal(target, mu_out, sd_out)
    auc = float(roc_auc_score(member, ratio))
    fpr, tpr, _ = roc_curve(member, ratio)
    at = float(np.max(tpr[fpr <= 0.1])) if np.any(fpr <= 0.1) else 0.0
    return auc, at


def _mean_where(scores: np.ndarray, mask: np.ndarray) -> np.ndarray:
    counts = mask.sum(axis=0)
    overall = float(scores[mask].mean()) if mask.any() else 0.0
    sums = np.where(mask, scores, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), overall)


def _spread(scores: np.ndarray, mask: np.ndarray, mu: np.ndarray) -> float:
    residual = (scores - mu[None, :])[mask]
    return max(float(residual.std()) if residual.size else 1.0, 1e-3)


def _log_normal(value: np.ndarray, mu: np.ndarray, sd: float) -> np.ndarray:
    return -0.5 * ((value - mu) / sd) ** 2 - np.log(sd)


def attack(
    make_model: Callable[[], Any],
    model: Any,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_held: np.ndarray,
    y_held: np.ndarray,
    *,
    sample: int,
    shadows: int,
    seed: int,
) -> AttackFigures:
    """Both attacks on ``model`` with as many members as non-members (at most ``sample``)."""
    rng = np.random.default_rng(seed)
    m = min(sample, y_train.size, y_held.size)
    pick_in = rng.choice(y_train.size, m, replace=False)
    pick_out = rng.choice(y_held.size, m, replace=False)
    x = np.vstack([x_train[pick_in], x_held[pick_out]])
    y = np.concatenate([y_train[pick_in], y_held[pick_out]]).astype(np.int64)
    member = np.r_[np.ones(m, dtype=np.int64), np.zeros(m, dtype=np.int64)]
    proba = model.predict_proba(x)
    wc_auc, wc_adv = worst_case(proba, y, member, seed)
    l_auc, l_tpr = lira(make_model, x, y, member, proba, shadows, seed)
    return AttackFigures(
        worst_case_auc=round(wc_auc, 4),
        worst_case_advantage=round(wc_adv, 4),
        lira_auc=round(l_auc, 4),
        lira_tpr_at_fpr_01=round(l_tpr, 4),
        shadow_models=shadows,
        members=m,
    )
