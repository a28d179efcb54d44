"""The scope a query is admitted against, the allow-lists as data, and small helpers
shared by the passes of :mod:`policies.admission`."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml
from sqlglot import exp

from ..access import GRANTABLE_FAMILIES
from ..classes import Classification
from ..errors import ConfigError, PolicyRefusal
from ..outputs import OutputSpec

if TYPE_CHECKING:
    from ..disclosure import DisclosureParams

ARTICLE = "Art. 15"
DIALECT = "duckdb"
FUNCTIONS_FILE = Path(__file__).resolve().parent.parent / "sql_functions.yaml"


@dataclass(frozen=True)
class TableScope:
    """One table the operator may query, with its classification and granted columns."""

    name: str
    classification: Classification
    columns: frozenset[str] | None = None  # None = every classified column


@dataclass(frozen=True)
class QueryScope:
    """What one operator's query may touch and which extra aggregates it may use."""

    tables: Mapping[str, TableScope]
    extra_aggregates: frozenset[str] = frozenset()
    aggregate_expressions: bool = False
    # "table": exact outputs under table mode's rules (:mod:`.table_mode`); "dp": the
    # agreement's differential-privacy mode answers the query with noise; "verification":
    # a verification rule's aggregate twin (policies.verification.rules), checked for the
    # columns it reads only.
    mode: str = "table"
    # The disclosure parameters in force (the platform's minimums tightened by the
    # grants), for a kind that decides at admission what may come back (an HE sum's
    # smallest group); a SQL job's output check receives them after the run instead.
    disclosure: DisclosureParams | None = None


@dataclass(frozen=True)
class AdmittedQuery:
    """A query that passed admission, normalised and described."""

    sql: str
    tree: exp.Select
    spec: OutputSpec
    tables: tuple[str, ...]
    # Table mode: "dataset.column" grouped or filtered without a declared domain; the
    # output then goes to the output review (values seen are not a declared domain).
    undeclared: tuple[str, ...] = ()


class Clause(StrEnum):
    SELECT = "SELECT"
    WHERE = "WHERE"
    JOIN = "JOIN ... ON"
    GROUP_BY = "GROUP BY"
    HAVING = "HAVING"
    ORDER_BY = "ORDER BY"


@dataclass(frozen=True)
class FunctionPolicy:
    """The allow-lists of ``sql_functions.yaml``."""

    base: frozenset[str]
    grantable: Mapping[str, str]
    member_value: frozenset[str]
    other: frozenset[str]
    scalar: frozenset[str]
    syntax: frozenset[str]
    date_parts: frozenset[str]
    date_trunc_units: frozenset[str]
    min_bin_width: float
    max_prefix: int

    @property
    def aggregate_names(self) -> frozenset[str]:
        return self.base | set(self.grantable) | self.member_value | self.other


@functools.cache
def load_function_policy(path: Path = FUNCTIONS_FILE) -> FunctionPolicy:
    """Read and validate the allow-lists (cached: the file is part of the release)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        aggs, gen = data["aggregates"], data["generalisers"]
        grantable = {str(k).lower(): str(v) for k, v in aggs["grantable"].items()}
        policy = FunctionPolicy(
            base=frozenset(aggs["base"]),
            grantable=grantable,
            member_value=frozenset(aggs["member_value"]),
            other=frozenset(aggs["other"]),
            scalar=frozenset(data["scalar_functions"]),
            syntax=frozenset(data["syntax"]),
            date_parts=frozenset(gen["date_parts"]),
            date_trunc_units=frozenset(gen["date_trunc_units"]),
            min_bin_width=float(gen["min_bin_width"]),
            max_prefix=int(gen["max_prefix"]),
        )
    except (OSError, yaml.YAMLError, KeyError, TypeError, AttributeError, ValueError) as exc:
        raise ConfigError(f"cannot read the SQL allow-lists in {path}: {exc}") from exc
    unknown = set(grantable.values()) - GRANTABLE_FAMILIES
    if unknown:
        raise ConfigError(f"unknown aggregate family in {path}: {sorted(unknown)[0]}")
    return policy


def refuse_query(
    rule: str, message: str, *, subject: str | None = None, hint: str | None = None
) -> NoReturn:
    raise PolicyRefusal(rule, f"{message} ({ARTICLE})", article=ARTICLE, subject=subject, hint=hint)


def arg_of(node: exp.Expression, name: str) -> Any:
    """An arg of a node; sqlglot 30 spells some with a trailing underscore (``from_``)."""
    value = node.args.get(name)
    return value if value is not None else node.args.get(name + "_")


def unwrap(node: exp.Expression) -> exp.Expression:
    while isinstance(node, exp.Paren):
        node = node.this
    return node


def key_text(node: exp.Expression) -> str:
    """A canonical text of an expression, to compare group keys and outputs."""
    return unwrap(node).sql(dialect=DIALECT)


def function_name(node: exp.Expr) -> str:
    """The lower-case SQL name of a function node as DuckDB spells it."""
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    match = re.match(r"\s*([A-Za-z_][A-Za-z_0-9]*)\s*\(", node.sql(dialect=DIALECT))
    return match.group(1).lower() if match else node.key


def number_of(node: exp.Expression | None) -> float | None:
    node = unwrap(node) if node is not None else None
    if isinstance(node, exp.Literal) and not node.is_string:
        try:
            return float(node.this)
        except ValueError:
            return None
    return None
