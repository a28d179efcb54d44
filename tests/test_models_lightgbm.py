"""LightGBM among the models (issue 22): its bounded hyperparameters, its booster read into
the arrays the structural checks judge, leaves of at least ``min_samples_leaf`` entities
for real, split points moved off the data, and its export giving the platform's scores."""

from __future__ import annotations

import json

import lightgbm
import numpy as np
import pytest
from model_helpers import DATASET, SOUND, World, credit_table, make_world
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from jobs import get_kind
from jobs.model import ModelRequest, require_leaf_size
from jobs.model_checks import (
    FittedArrays,
    StructuralLimits,
    TreeArrays,
    check_structure,
    judge_attacks,
    rare_value_parameters,
    verdict_of,
)
from policies.admission import QueryScope, TableScope
from policies.classes import Classification
from policies.errors import PolicyRefusal
from sandbox.core import ledger
from sandbox.models import export, portable, service
from sandbox.models.attacks import attack
from sandbox.models.fit import (
    LightGBMTrees,
    arrays_of,
    arrays_to_json,
    fit,
    leaf_of,
    lightgbm_trees,
    make_estimator,
    off_the_data,
    outputs_of,
)

K = 10  # the platform's default disclosure threshold
LIMITS = StructuralLimits(min_entities=K, max_depth=8)
COLUMNS = ["capital", "arrears_months", "staff", "bill_mean"]
PARAMS = {
    "n_estimators": 60,
    "max_depth": 4,
    "num_leaves": 15,
    "learning_rate": 0.1,
    "min_samples_leaf": 60,
}
LGBM = {**SOUND, "name": "credit_lgbm", "algorithm": "lightgbm", "params": PARAMS}


def _xy(n: int, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    table = credit_table(n, seed)
    x = np.column_stack([table.column(c).to_numpy() for c in COLUMNS]).astype(float)
    return x, table.column("defaulted").to_numpy().astype(np.int64)


@pytest.fixture(scope="module")
def data():
    x, y = _xy(2500)
    return train_test_split(x, y, test_size=0.3, stratify=y, random_state=1)


def _failed(findings):
    return {f.rule for f in findings if not f.passed}


def _structure(model, x, y):
    arrays = arrays_of(model, "lightgbm", y.size, x.shape[1])
    return arrays, check_structure(arrays, LIMITS, rare_value_parameters(arrays, x, K))


def test_a_sound_lightgbm_model_passes_both_checks(data):
    x_tr, x_ho, y_tr, y_ho = data
    with threadpool_limits(1):
        model = fit("lightgbm", PARAMS, 1, x_tr, y_tr)
        arrays, structure = _structure(model, x_tr, y_tr)
        figures = attack(
            lambda: make_estimator("lightgbm", PARAMS, 1),
            model, x_tr, y_tr, x_ho, y_ho, sample=700, shadows=6, seed=1,
        )  # fmt: skip
    attacks = judge_attacks(figures, 0.6)
    assert not _failed(structure), structure
    assert not _failed(attacks), attacks
    assert len(arrays.trees) == PARAMS["n_estimators"]
    smallest = next(f for f in structure if f.rule == "leaf_entities").figure
    assert smallest >= PARAMS["min_samples_leaf"]
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(y_ho, model.predict_proba(x_ho)[:, 1]) > 0.65


def test_the_arrays_are_the_boosters_own_trees(data):
    """The arrays answer as the booster does, and each leaf's entities are the training
    entities that reach it: the numbers judged are the model's."""
    x_tr, _, y_tr, _ = data
    model = LightGBMTrees(PARAMS, 1)
    booster = model.estimator().fit(x_tr, y_tr)
    model.fit(x_tr, y_tr)
    np.testing.assert_allclose(model.predict_proba(x_tr), booster.predict_proba(x_tr), atol=1e-12)
    for tree in model.trees:
        reached = np.bincount(leaf_of(tree, x_tr), minlength=tree.entities.size)
        assert np.array_equal(reached[tree.leaves], tree.entities[tree.leaves])
        assert tree.entities[0] == y_tr.size
        assert tree.depth() <= PARAMS["max_depth"]
        assert tree.leaves.size <= PARAMS["num_leaves"]
        assert np.all(tree.children_left[tree.splits()] > tree.splits())  # children after parents


def test_lightgbms_own_leaf_count_lets_small_leaves_through_and_ours_does_not(data):
    """LightGBM counts a candidate leaf's entities from its hessians: ``min_child_samples``
    alone admits leaves of a few entities. The hessian floor of :class:`LightGBMTrees`
    keeps every leaf at ``min_samples_leaf`` or more."""
    import lightgbm

    x_tr, _, y_tr, _ = data
    params = {**PARAMS, "n_estimators": 100, "min_samples_leaf": 20}
    plain = lightgbm.LGBMClassifier(
        n_estimators=100, max_depth=4, num_leaves=15, min_child_samples=20,
        deterministic=True, n_jobs=1, random_state=1, verbose=-1,
    ).fit(x_tr, y_tr)  # fmt: skip
    trees, _ = lightgbm_trees(plain.booster_.dump_model())
    assert min(int(t.entities[t.leaves].min()) for t in trees) < 20
    ours = fit("lightgbm", params, 1, x_tr, y_tr)
    assert min(int(t.entities[t.leaves].min()) for t in ours.trees) >= 20


def test_a_memorising_lightgbm_model_is_refused_by_its_leaves(data):
    x_tr, _, y_tr, _ = data
    params = {"n_estimators": 50, "max_depth": 6, "num_leaves": 31, "learning_rate": 0.3,
              "min_samples_leaf": 1}  # fmt: skip
    model = fit("lightgbm", params, 1, x_tr, y_tr)
    _, structure = _structure(model, x_tr, y_tr)
    assert "leaf_entities" in _failed(structure)
    smallest = next(f for f in structure if f.rule == "leaf_entities").figure
    assert smallest <= 2  # leaves of one or two enterprises
    assert verdict_of(structure).value == "refused"


def test_a_lightgbm_tree_with_a_leaf_of_two_entities_is_refused():
    dump = {
        "objective": "binary sigmoid:1",
        "num_tree_per_iteration": 1,
        "tree_info": [
            {"tree_structure": {
                "split_index": 0, "split_feature": 0, "threshold": 2.5, "decision_type": "<=",
                "internal_count": 42,
                "left_child": {"leaf_index": 0, "leaf_value": -0.2, "leaf_count": 40},
                "right_child": {"leaf_index": 1, "leaf_value": 0.3, "leaf_count": 2},
            }}
        ],
    }  # fmt: skip
    trees, values = lightgbm_trees(dump)
    assert trees[0].children_left.tolist() == [1, -1, -1]
    assert trees[0].entities.tolist() == [42, 40, 2]
    assert values[0].tolist() == [0.0, -0.2, 0.3]
    model = FittedArrays("lightgbm", 42, 1, trees=tuple(trees))
    x = np.r_[np.full(40, 1.0), np.full(2, 4.0)][:, None]
    findings = check_structure(model, LIMITS, rare_value_parameters(model, x, K))
    assert _failed(findings) == {"leaf_entities"}
    assert next(f for f in findings if f.rule == "leaf_entities").figure == 2
    with pytest.raises(ValueError, match="not 'value <= threshold'"):
        categorical = json.loads(json.dumps(dump).replace('"<="', '"=="'))
        lightgbm_trees(categorical)


def test_split_points_on_the_data_are_moved_off_it():
    """A split point that is one entity's value moves to the midpoint towards the next
    value: every training entity reaches the same leaf, and no split point is a value."""
    x = np.r_[np.full(30, 1.0), [5.0], np.full(30, 9.0)][:, None]
    tree = TreeArrays(
        children_left=np.array([1, -1, -1]),
        children_right=np.array([2, -1, -1]),
        feature=np.array([0, -2, -2]),
        threshold=np.array([5.0, -2.0, -2.0]),
        entities=np.array([61, 31, 30]),
    )
    before = FittedArrays("lightgbm", 61, 1, trees=(tree,))
    [moved] = off_the_data([tree], x)
    after = FittedArrays("lightgbm", 61, 1, trees=(moved,))
    assert rare_value_parameters(before, x, K) == 1
    assert rare_value_parameters(after, x, K) == 0
    assert moved.threshold[0] == 7.0
    assert np.array_equal(leaf_of(tree, x), leaf_of(moved, x))


@pytest.mark.slow
def test_lightgbm_on_a_large_population_puts_split_points_on_values_and_fit_moves_them():
    """Past 200,000 entities LightGBM builds its bins from a sample: a bin's edge, the
    midpoint of two sampled values, may be the value of an entity left out of the sample."""
    x, y = _xy(300_000, seed=3)
    params = {**PARAMS, "n_estimators": 40}
    with threadpool_limits(1):
        raw = LightGBMTrees(params, 1).estimator().fit(x, y)
        model = fit("lightgbm", params, 1, x, y)
    trees, _ = lightgbm_trees(raw.booster_.dump_model())
    before = FittedArrays("lightgbm", y.size, 4, trees=tuple(trees))
    assert rare_value_parameters(before, x, K) > 0
    assert rare_value_parameters(arrays_of(model, "lightgbm", y.size, 4), x, K) == 0
    np.testing.assert_allclose(model.predict_proba(x), raw.predict_proba(x), atol=1e-12)


# --------------------------------------------------------------------------- admission

SCOPE = QueryScope(
    tables={
        DATASET: TableScope(
            DATASET,
            Classification.from_dict(
                {
                    "entity_key": "credit_code",
                    "columns": {
                        "credit_code": "identifier",
                        "capital": "measure",
                        "defaulted": "measure",
                    },
                }
            ),
        )
    }
)


def _plan(params):
    request = {
        "name": "m",
        "features": "SELECT credit_code, MAX(capital) AS capital, MAX(defaulted) AS d "
        f"FROM {DATASET} GROUP BY credit_code",
        "label": "d",
        "algorithm": "lightgbm",
        "params": params,
    }
    return get_kind("model_train").plan(request, SCOPE)


@pytest.mark.parametrize(
    "params",
    [
        {"num_leaves": 32},
        {"num_leaves": 1},
        {"num_leaves": 7.5},
        {"max_depth": 7},
        {"n_estimators": 301},
        {"learning_rate": 0.0},
        {"learning_rate": 2.0},
        {"min_samples_leaf": 0},
        {"bagging_fraction": 0.5},  # a LightGBM parameter that is not on the list
        {"min_sum_hessian_in_leaf": 0.0},
    ],
)
def test_hyperparameters_out_of_bounds_are_refused(params):
    with pytest.raises(PolicyRefusal) as refused:
        _plan(params)
    assert (refused.value.rule, refused.value.article) == ("hyperparameter", "Art. 15")
    assert refused.value.subject == next(iter(params))


def test_an_admitted_lightgbm_plan_carries_every_bound_parameter():
    plan = _plan({"num_leaves": 8, "min_samples_leaf": 40})
    assert plan.task()["algorithm"] == "lightgbm"
    assert plan.task()["params"] == {
        "n_estimators": 100, "max_depth": 4, "num_leaves": 8, "learning_rate": 0.1,
        "min_samples_leaf": 40,
    }  # fmt: skip
    require_leaf_size(plan.request, K)  # 40 entities a leaf: admitted
    small = ModelRequest.from_dict({**LGBM, "params": {"min_samples_leaf": 3}})
    with pytest.raises(PolicyRefusal, match="min_samples_leaf 3 is below") as refused:
        require_leaf_size(small, K)
    assert refused.value.rule == "leaf_size"


# --------------------------------------------------------------------------- portable


def test_the_portable_forms_give_the_models_own_scores():
    ort = pytest.importorskip("onnxruntime")
    x, y = _xy(1500)
    with threadpool_limits(1):
        model = fit("lightgbm", PARAMS, 1, x, y)
    numbers = arrays_to_json(arrays_of(model, "lightgbm", y.size, 4), outputs_of(model, "lightgbm"))
    card = {"name": "m", "algorithm": "lightgbm", "features": COLUMNS, "label": "defaulted",
            "model_sha256": portable.model_sha256(numbers)}  # fmt: skip
    description = portable.describe(card, numbers)
    expected = model.predict_proba(x)[:, 1]
    np.testing.assert_allclose(portable.predict(description, x), expected, atol=1e-12)
    session = ort.InferenceSession(portable.to_onnx(description))
    np.testing.assert_allclose(session.run(None, {"features": x})[0][:, 0], expected, atol=1e-6)


# --------------------------------------------------------------------------- end to end


@pytest.fixture
def world(platform, make_principal, tmp_path) -> World:
    return make_world(platform, make_principal, tmp_path / "data")


def test_lightgbm_trains_in_the_worker_passes_and_exports_the_platforms_scores(world, tmp_path):
    """Trained in the isolated worker, judged, signed; a memorising request is refused
    before anything runs; the exported ONNX file gives the scores kept inside."""
    from sandbox.data.products import fetch_product
    from sandbox.verification.keys import load_secret, normalise_key, subject_hash

    w = world
    out = service.train(w.platform, w.operator, LGBM)
    card = out["card"]
    assert (card["algorithm"], card["verdict"]) == ("lightgbm", "passed"), card
    assert card["params"] == PARAMS
    assert 0.55 < card["evaluation"]["auc"] <= 1
    assert card["library"]["lightgbm"] == lightgbm.__version__  # the card names what made it
    assert service.list_models(w.platform, w.operator)[0]["algorithm"] == "lightgbm"
    memorising = {**LGBM, "name": "memorised", "params": {**PARAMS, "min_samples_leaf": 2}}
    with pytest.raises(PolicyRefusal) as refused:
        service.train(w.platform, w.operator, memorising)
    assert refused.value.rule == "leaf_size"
    with w.platform.store.read() as conn:
        assert ledger.query(conn, action="model.refused")[-1]["details"]["rule"] == "leaf_size"
        model = service.model_row(conn, "credit_lgbm")
    # the export: asked, approved, fetched; its ONNX file scores as the platform did
    export.request_export(w.platform, w.operator, "credit_lgbm")
    product = export.approve_export(w.platform, w.city, "credit_lgbm")["product"]
    folder = fetch_product(w.platform, w.operator, product, tmp_path / "out")
    codes = w.table.column("credit_code").to_pylist()[:40]
    x = np.column_stack([w.table.column(c).to_numpy()[:40] for c in COLUMNS]).astype(float)
    kept = service.scores_of(w.platform, model.scores_path).to_pydict()
    by_hash = dict(zip(kept["subject_hash"], kept["score"], strict=True))
    secret = load_secret(w.platform.home / "keys")
    inside = np.array([by_hash[subject_hash(secret, (normalise_key(c),))] for c in codes])
    assert np.unique(inside).size > 1  # the scores differ between enterprises
    description = json.loads((folder / "model.json").read_text())
    assert description["algorithm"] == "lightgbm"
    np.testing.assert_allclose(portable.predict(description, x), inside, atol=1e-12)
    ort = pytest.importorskip("onnxruntime")
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"features": x})[0][:, 0], inside, atol=1e-6)
