"""Static admission of an operator's SQL: only aggregate cells may leave (Art. 15).

Operators analyse raw data they never see. Before a query runs, this module
parses it (sqlglot, DuckDB dialect), resolves every column against the scope
granted to the operator, and checks each use of each column against its class
(``policies.classes``). Everything not explicitly allowed is refused: default
deny. The allow-lists (aggregates, scalar functions, syntax, generalisers) are
data, in ``policies/sql_functions.yaml``.

Each refusal is a :class:`~policies.errors.PolicyRefusal` whose ``rule`` is one
of these stable names, whose message names the column, function or clause and
the article, and which never echoes a literal value of the query:

``parse_error`` ``statement`` ``single_select`` ``table_function``
``unknown_table`` ``unknown_column`` ``column_not_granted`` ``join``
``window`` ``limit`` ``order_by`` ``aggregate_filter`` ``aggregate_context``
``row_level`` ``distinct`` ``output_name`` ``output_expression``
``member_aggregate`` ``aggregate_not_allowed`` ``aggregate_not_granted``
``aggregate_expression`` ``identifier_literal`` ``identifier_use``
``measure_outside_aggregate`` ``quasi_generalisation`` ``function_not_allowed``
``group_key_not_in_output`` ``nesting``

Decisions worth knowing:

* SUM/AVG (and granted MIN, MAX, ...) over a dimension, quasi or public column
  are admitted: the cell gets the same evidence and output checks as any
  magnitude, so refusing would buy no protection. Only identifiers are refused
  inside aggregates other than COUNT / COUNT(DISTINCT).
* Every GROUP BY key must also be an output column (``group_key_not_in_output``):
  the evidence rewrite (``jobs.sql_evidence``) joins each visible row to its
  evidence on the group keys, and a hidden key would also split cells silently.
* An output column is a group key, or one allowed aggregate optionally wrapped
  in ``round(.., n)`` or ``CAST``; combinations of aggregates
  (``SUM(a) / SUM(b)``) are refused (``output_expression``) because their cells
  have no single evidence.
* ``SELECT DISTINCT`` over dimension or public columns is rewritten to
  ``GROUP BY`` of them, so its rows get contributor counts like any group.
* ORDER BY may only name group keys (by alias, position or the same
  expression); it is rewritten to the output names. Ordering by an aggregate
  would place a suppressed cell by its hidden value (``order_by``).
* No output may exist or not depending on an aggregate's value
  (``aggregate_filter``, issue 17): HAVING, QUALIFY, a subquery or CTE that
  aggregates, a window over an aggregate and the FILTER clause are refused
  before anything runs; otherwise a binary search on ``HAVING SUM(income) > t``
  under a filter that singles out one person reads the value from whether a
  row came back. A failure is an answer too: every CAST is run as TRY_CAST, and
  arithmetic in WHERE, in a group key (not a generalisation) or in an
  aggregate's argument inside TRY, so a value that does not fit gives NULL
  instead of a failed job.

The passes, one module each: :mod:`.scope` (the scope, the allow-lists as data,
shared helpers), :mod:`.shape` (parse; one SELECT, its tables and joins),
:mod:`.naming` (output names; what is an aggregate), :mod:`.checker` (every use of
every column and function), :mod:`.grouping` (grouping sets), :mod:`.admit` (the
pipeline and the whole-query checks).
"""

from ..access import GRANTABLE_FAMILIES
from .admit import admit
from .naming import aggregate_argument, unwrap_aggregate
from .scope import (
    ARTICLE,
    DIALECT,
    FUNCTIONS_FILE,
    AdmittedQuery,
    Clause,
    FunctionPolicy,
    QueryScope,
    TableScope,
    function_name,
    load_function_policy,
)
from .shape import MAX_NESTING, check_nesting

__all__ = [
    "ARTICLE",
    "DIALECT",
    "FUNCTIONS_FILE",
    "GRANTABLE_FAMILIES",
    "MAX_NESTING",
    "AdmittedQuery",
    "Clause",
    "FunctionPolicy",
    "QueryScope",
    "TableScope",
    "admit",
    "aggregate_argument",
    "check_nesting",
    "function_name",
    "load_function_policy",
    "unwrap_aggregate",
]
