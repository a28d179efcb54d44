"""Limits decided before a job runs, from its SQL and the declared domains (issue 25).

A job that fails because its output had more rows than the cap tells the operator
that the data holds more groups than the cap: an answer read from the data. When
every group key is built from columns whose provider declared a domain (code list,
bands, range: :mod:`policies.domains`), the most rows the query can yield is known
from the SQL alone:

* a key over a column with a declared code list takes at most the codes' count of
  values, plus NULL, whatever function of the column it is (a function cannot make
  more values than it is given); over several such columns, their product;
* ``year(d)`` over a column with a declared range of years takes at most the range's
  years, plus NULL; any other use of a ranged or banded column is not bounded by its
  declaration (a band or a year range describes the generalised value, not the raw one);
* a grouping set yields at most the product of its keys' bounds, and the query the
  sum over its grouping sets (one row for a set without keys).

:func:`output_bound` gives that number, or None when a key reads a column without
a declared domain (the cap is then still checked on the result, as before). The
caller refuses the job before it runs when the bound is over the cap
(``output_rows``), so a declared query can never fail on it.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlglot import exp

from policies.admission import AdmittedQuery
from policies.domains import Classification, Codes, Range, domain_of, domain_size


def key_columns(query: AdmittedQuery) -> dict[str, set[tuple[str, str]]]:
    """Each group key's name and the (dataset, column) pairs its expression reads."""
    tree = query.tree
    datasets: dict[str, str] = {}
    from_ = tree.args.get("from_") or tree.args.get("from")
    tables = [from_.this] if from_ is not None else []
    tables += [join.this for join in tree.args.get("joins") or []]
    for table in tables:
        if isinstance(table, exp.Table):
            datasets[table.alias_or_name] = table.name
    projections = {p.alias: p.this for p in tree.expressions}
    out: dict[str, set[tuple[str, str]]] = {}
    for name in query.spec.group_keys:
        read: set[tuple[str, str]] = set()
        for column in projections[name].find_all(exp.Column):
            dataset = datasets.get(column.table) if column.table else None
            if dataset is None and len(datasets) == 1:
                dataset = next(iter(datasets.values()))
            read.add((dataset or "", column.name))
        out[name] = read
    return out


def output_bound(query: AdmittedQuery, classifications: Mapping[str, Classification]) -> int | None:
    """The most output rows ``query`` can yield given the declared domains, or None
    when a group key reads a column without one."""
    projections = {p.alias: p.this for p in query.tree.expressions}
    bounds: dict[str, int] = {}
    for name, columns in key_columns(query).items():
        size = 1
        for column in columns:
            if column[0] not in classifications:
                return None
            domain = domain_of(column, classifications)
            key = projections[name]
            if isinstance(domain, Codes) or (
                isinstance(domain, Range) and isinstance(key, exp.Year) and len(columns) == 1
            ):
                size *= domain_size(domain) + 1  # NULL is a value of a group key too
            else:
                return None
        bounds[name] = size
    total = 0
    for grouping_set in query.spec.grouping_sets:
        rows = 1
        for key in grouping_set:
            rows *= bounds[key]
        total += rows
    return total
