"""Data models (数据模型, Art. 4): the policy half of training, behind :class:`JobKind`.

An operator asks for a model with a request (:class:`ModelRequest`)::

    {"name": "credit_risk",
     "features": "SELECT credit_code, SUM(amount) AS paid, MAX(overdue) AS defaulted
                  FROM bills GROUP BY credit_code",
     "label": "defaulted",
     "algorithm": "decision_tree",
     "params": {"max_depth": 4, "min_samples_leaf": 50}}

The features query yields one row per entity: its first output is the entity key
(an identifier column of the first table), its only GROUP BY key; every other output
is named and computed from that entity's rows. Those rows are read at row level
inside the sandbox (that is what a model learns from) and never returned: nothing of
the query's result leaves the worker but the fitted model's parameters, figures over
the held-out split and each entity's score, which stays inside for the scoring service.

Admission (:func:`admit_features`) takes the query apart and hands its aggregate
twin (the same outputs, FROM and WHERE without the entity key) to the SQL checker,
:func:`policies.admission.admit`, in the scope the operator's grants give, so the
column classes, the function allow-lists, the join rules and ``identifier_literal``
are the jobs' own; every aggregate family may be used (the values stay inside).

The algorithm comes from an allow-list (:data:`ALGORITHMS`: scikit-learn's logistic
regression, decision tree and histogram gradient boosting, and LightGBM) with bounded
hyperparameters; a tree's leaves may never be smaller than the disclosure threshold
(:func:`require_leaf_size`). The fitted model is judged by :mod:`jobs.model_checks`.

Refusal rules (``PolicyRefusal.rule``): ``model_request``, ``features_shape``,
``entity_key``, ``label``, ``algorithm``, ``hyperparameter``, ``leaf_size``; and every
rule of :mod:`policies.admission`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NoReturn

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from policies.admission import (
    DIALECT,
    GRANTABLE_FAMILIES,
    AdmittedQuery,
    QueryScope,
    admit,
    check_nesting,
)
from policies.admission.shape import parse_one_select
from policies.classes import ColumnClass
from policies.errors import InputError, PolicyRefusal
from policies.suggest import did_you_mean

from .base import JobKind

KIND = "model_train"
ARTICLE = "Art. 15"
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
MAX_SQL_BYTES = 64 * 1024
MAX_FEATURES = 64


@dataclass(frozen=True)
class Bound:
    """One hyperparameter: its range, default and whether it is a whole number."""

    low: float
    high: float
    default: float
    whole: bool = False


# The allow-list: algorithm -> its hyperparameters and their bounds. Anything else is
# refused (default deny); the bounds keep training inside the job's limits and keep
# a tree shallow enough for its leaves to hold many entities.
ALGORITHMS: Mapping[str, Mapping[str, Bound]] = {
    "logistic_regression": {
        "C": Bound(1e-4, 100.0, 1.0),
        "max_iter": Bound(10, 2000, 300, whole=True),
    },
    "decision_tree": {
        "max_depth": Bound(1, 8, 4, whole=True),
        "min_samples_leaf": Bound(1, 1_000_000, 50, whole=True),
    },
    "gradient_boosting": {
        "n_estimators": Bound(1, 300, 100, whole=True),
        "max_depth": Bound(1, 5, 3, whole=True),
        "learning_rate": Bound(0.01, 1.0, 0.1),
        "min_samples_leaf": Bound(1, 1_000_000, 50, whole=True),
    },
    # LightGBM grows a tree leaf by leaf: num_leaves bounds its leaves, max_depth its depth
    "lightgbm": {
        "n_estimators": Bound(1, 300, 100, whole=True),
        "max_depth": Bound(1, 6, 4, whole=True),
        "num_leaves": Bound(2, 31, 15, whole=True),
        "learning_rate": Bound(0.01, 1.0, 0.1),
        "min_samples_leaf": Bound(1, 1_000_000, 50, whole=True),
    },
}
TREE_ALGORITHMS = frozenset({"decision_tree", "gradient_boosting", "lightgbm"})


def refuse(
    rule: str, message: str, subject: str | None = None, hint: str | None = None
) -> NoReturn:
    raise PolicyRefusal(rule, f"{message} ({ARTICLE})", article=ARTICLE, subject=subject, hint=hint)


@dataclass(frozen=True)
class ModelRequest:
    """What an operator files to train a model, as data."""

    name: str
    features: str
    label: str
    algorithm: str
    params: Mapping[str, float] = field(default_factory=dict)
    holdout: float = 0.3
    seed: int = 1
    description: str = ""

    FIELDS = frozenset(
        {"name", "features", "label", "algorithm", "params", "holdout", "seed", "description"}
    )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelRequest:
        if not isinstance(data, Mapping):
            raise InputError("a model request is a mapping: " + ", ".join(sorted(cls.FIELDS)))
        unknown = sorted(set(data) - cls.FIELDS)
        if unknown:
            raise InputError(
                f"unknown field '{unknown[0]}' in the model request; "
                + did_you_mean(unknown[0], cls.FIELDS)
            )
        for needed in ("name", "features", "label", "algorithm"):
            if not isinstance(data.get(needed), str) or not str(data[needed]).strip():
                raise InputError(f"the model request needs '{needed}' (text)")
        name = str(data["name"])
        if not NAME_PATTERN.match(name):
            raise InputError(
                f"model name '{name[:64]}': lower-case letters, digits and '_', "
                "starting with a letter"
            )
        features = str(data["features"])
        if len(features.encode()) > MAX_SQL_BYTES:
            raise InputError(f"the features query is longer than {MAX_SQL_BYTES} bytes")
        algorithm = str(data["algorithm"])
        params = _params(algorithm, data.get("params") or {})
        holdout = _number(data.get("holdout", 0.3), "holdout", 0.1, 0.5)
        seed = int(_number(data.get("seed", 1), "seed", 0, 2**31 - 1, whole=True))
        return cls(
            name=name,
            features=features,
            label=str(data["label"]),
            algorithm=algorithm,
            params=params,
            holdout=holdout,
            seed=seed,
            description=str(data.get("description") or "")[:500],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "features": self.features,
            "label": self.label,
            "algorithm": self.algorithm,
            "params": dict(self.params),
            "holdout": self.holdout,
            "seed": self.seed,
            "description": self.description,
        }


def _number(value: object, name: str, low: float, high: float, whole: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"'{name}' must be a number")
    number = float(value)
    if whole and not number.is_integer():
        refuse("hyperparameter", f"'{name}' must be a whole number", subject=name)
    if not low <= number <= high:
        refuse(
            "hyperparameter",
            f"'{name}' must lie between {low:g} and {high:g}",
            subject=name,
            hint="the bounds keep the model coarse and its training inside the job's limits",
        )
    return number


def _params(algorithm: str, given: object) -> dict[str, float]:
    """The algorithm's hyperparameters: each named one checked against its bound, the
    others at their defaults."""
    if algorithm not in ALGORITHMS:
        refuse(
            "algorithm",
            f"algorithm '{algorithm[:40]}' is not on the allow-list",
            subject="algorithm",
            hint=did_you_mean(algorithm, ALGORITHMS),
        )
    if not isinstance(given, Mapping):
        raise InputError("'params' is a mapping of hyperparameter names to numbers")
    bounds = ALGORITHMS[algorithm]
    for name in given:
        if name not in bounds:
            refuse(
                "hyperparameter",
                f"'{name}' is not a hyperparameter of {algorithm} that may be set",
                subject=str(name),
                hint=did_you_mean(str(name), bounds),
            )
    out = {}
    for name, bound in bounds.items():
        value = given.get(name, bound.default)
        out[name] = _number(value, name, bound.low, bound.high, bound.whole)
    return out


def require_leaf_size(request: ModelRequest, min_entities: int) -> None:
    """A tree's leaves hold at least the disclosure threshold of entities: a smaller
    leaf's score is a few entities' labels (rule ``leaf_size``)."""
    if request.algorithm not in TREE_ALGORITHMS:
        return
    leaf = int(request.params["min_samples_leaf"])
    if leaf < min_entities:
        refuse(
            "leaf_size",
            f"min_samples_leaf {leaf} is below the disclosure threshold of {min_entities} "
            "entities per leaf",
            subject="min_samples_leaf",
            hint=f"set min_samples_leaf to at least {min_entities}",
        )


# --------------------------------------------------------------------------- features


@dataclass(frozen=True)
class AdmittedFeatures:
    """A features query that passed admission, taken apart."""

    entity: str  # the output name of the entity key
    outputs: tuple[str, ...]  # every output but the key, in order
    engine_sql: str  # what the worker runs: one row per entity
    tables: tuple[str, ...]
    columns: Mapping[str, frozenset[str]]
    twin: AdmittedQuery


def _clause(tree: exp.Select, name: str) -> Any:
    value = tree.args.get(name)
    return value if value is not None else tree.args.get(name + "_")


def _entity_key(tree: exp.Select) -> exp.Column:
    """The one GROUP BY key: a bare column that is also the first output."""
    for name in ("having", "order", "limit", "offset", "qualify", "distinct"):
        if _clause(tree, name) is not None:
            refuse(
                "features_shape",
                f"the features query yields one row per entity: {name.upper()} is not admitted",
                subject=name.upper(),
            )
    group = _clause(tree, "group")
    keys = list(group.expressions) if group is not None else []
    if len(keys) != 1 or not isinstance(keys[0], exp.Column):
        refuse(
            "features_shape",
            "the features query groups by exactly one column, the entity key",
            subject="GROUP BY",
            hint="SELECT <entity key>, <features> FROM ... GROUP BY <entity key>",
        )
    key = keys[0]
    first = tree.expressions[0] if tree.expressions else None
    if not isinstance(first, exp.Column) or first.sql(dialect=DIALECT) != key.sql(dialect=DIALECT):
        refuse(
            "features_shape",
            "the first output of the features query is its GROUP BY key, unrenamed",
            subject="SELECT",
        )
    return key


def _require_identifier(key: exp.Column, tree: exp.Select, scope: QueryScope) -> None:
    aliases: dict[str, str] = {}
    for table in tree.find_all(exp.Table):
        aliases[table.alias_or_name] = table.name
    owners = [aliases[key.table]] if key.table in aliases else list(aliases.values())
    for owner in owners:
        if owner in scope.tables:
            cls = scope.tables[owner].classification.columns.get(key.name)
            if cls is ColumnClass.IDENTIFIER:
                return
    refuse(
        "entity_key",
        f"'{key.name}' is not an identifier column of the query's tables; a model learns "
        "one row per entity, keyed by its identifier",
        subject=key.name,
    )


def admit_features(sql: str, scope: QueryScope) -> AdmittedFeatures:
    """Admit a features query over the scope, or raise :class:`PolicyRefusal`."""
    check_nesting(sql)
    tree = parse_one_select(sql)
    key = _entity_key(tree)
    _require_identifier(key, tree, scope)
    outputs = []
    for node in tree.expressions[1:]:
        if not isinstance(node, exp.Alias) or not NAME_PATTERN.match(node.alias):
            refuse(
                "features_shape",
                "every feature is named: <expression> AS <name> (lower-case letters, digits, _)",
                subject=node.sql(dialect=DIALECT)[:60],
            )
        outputs.append(node.alias)
    if not outputs or len(outputs) > MAX_FEATURES + 1 or len(set(outputs)) != len(outputs):
        refuse(
            "features_shape",
            f"the features query names 2 to {MAX_FEATURES + 1} distinct outputs "
            "(features and the label) after the entity key",
            subject="SELECT",
        )
    # The aggregate twin: the key counted (COUNT(DISTINCT) of an identifier is admitted),
    # the grouping dropped; every other part as written.
    twin = tree.copy()
    twin.set("group", None)
    twin.set("group_", None)
    counted = exp.Count(this=exp.Distinct(expressions=[key.copy()]))
    twin.expressions[0].replace(exp.alias_(counted, "entity_count_"))
    relaxed = QueryScope(
        tables=scope.tables,
        extra_aggregates=frozenset(GRANTABLE_FAMILIES),
        aggregate_expressions=True,
        mode="model",  # stays inside: the column rules apply, not table mode's
    )
    admitted = admit(twin.sql(dialect=DIALECT), relaxed)
    engine = admitted.tree.copy()
    head = engine.expressions[0]
    column = head.find(exp.Column)
    if column is None:  # pragma: no cover - the twin's first output counts the key
        refuse("features_shape", "the entity key could not be resolved", subject="SELECT")
    engine.expressions[0].replace(exp.alias_(column.copy(), "entity_", quoted=True))
    # ordered by the key: DuckDB's groups come in any order, and the split must not
    engine = engine.group_by(column.copy()).order_by(column.copy())
    return AdmittedFeatures(
        entity=key.name,
        outputs=tuple(outputs),
        engine_sql=engine.sql(dialect=DIALECT),
        tables=admitted.tables,
        columns=_columns_read(admitted),
        twin=admitted,
    )


def _columns_read(admitted: AdmittedQuery) -> dict[str, frozenset[str]]:
    qualified = {t.alias_or_name: t.name for t in admitted.tree.find_all(exp.Table) if t.name}
    columns: dict[str, set[str]] = {}
    for column in admitted.tree.find_all(exp.Column):
        table = qualified.get(column.table)
        if table is not None:
            columns.setdefault(table, set()).add(column.name)
    return {t: frozenset(c) for t, c in columns.items()}


# --------------------------------------------------------------------------- the kind


@dataclass(frozen=True)
class ModelPlan:
    """What the training worker runs: the features query and the training spec."""

    request: ModelRequest
    features: AdmittedFeatures

    @property
    def kind(self) -> str:
        return KIND

    @property
    def tables(self) -> tuple[str, ...]:
        return self.features.tables

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(o for o in self.features.outputs if o != self.request.label)

    def task(self) -> dict[str, Any]:
        """The worker's task beyond the SQL: label, features, algorithm and its settings."""
        return {
            "label": self.request.label,
            "features": list(self.feature_names),
            "algorithm": self.request.algorithm,
            "params": dict(self.request.params),
            "holdout": self.request.holdout,
            "seed": self.request.seed,
        }


class ModelTrain(JobKind[ModelPlan]):
    """Train a model on per-entity features inside the sandbox."""

    name = KIND
    article = ARTICLE
    command = "sandbox model train"

    def referenced_datasets(self, request: Mapping[str, Any]) -> list[str]:
        sql = ModelRequest.from_dict(request).features
        try:
            check_nesting(sql)
            tree = sqlglot.parse_one(sql, dialect=DIALECT)
        except (SqlglotError, PolicyRefusal, RecursionError):
            return []  # admission names the fault with its rule
        names: list[str] = []
        for table in tree.find_all(exp.Table):
            if isinstance(table.this, exp.Identifier) and table.name not in names:
                names.append(table.name)
        return names

    def plan(self, request: Mapping[str, Any], scope: QueryScope) -> ModelPlan:
        parsed = ModelRequest.from_dict(request)
        features = admit_features(parsed.features, scope)
        if parsed.label not in features.outputs:
            refuse(
                "label",
                f"the label '{parsed.label[:40]}' is not an output of the features query",
                subject="label",
                hint=did_you_mean(parsed.label, features.outputs),
            )
        if len(features.outputs) < 2:
            refuse("features_shape", "the model needs at least one feature besides its label")
        if scope.disclosure is not None:
            require_leaf_size(parsed, scope.disclosure.min_entities)
        return ModelPlan(parsed, features)
