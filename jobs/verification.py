"""Verification products (数据核验): the policy half behind :class:`jobs.base.JobKind`.

An operator files a definition (:class:`policies.verification.Definition`): the keys a
consumer sends, the codes it may get back, and a rule in SQL over granted datasets.
:meth:`Verification.plan` admits the rule (``policies.verification.rules``: subject keys
are identifiers, codes are declared, the rule reads granted columns only) and returns
the :class:`~policies.verification.rules.AdmittedRule`; the platform builds the keyed
index from it (``sandbox.verification``) and answers calls from that index, never
from the raw rows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from policies.admission import DIALECT, QueryScope
from policies.verification import AdmittedRule, Definition, admit_rule

from .base import JobKind

KIND = "verification"


class Verification(JobKind[AdmittedRule]):
    """A verification product's rule, admitted against the granted datasets."""

    name = KIND
    article = "Art. 15"
    command = "sandbox verify define"

    def referenced_datasets(self, request: Mapping[str, Any]) -> list[str]:
        """The definition's dataset, then every other table its rule names."""
        definition = Definition.from_dict(request)
        names = [definition.dataset]
        try:
            tree = sqlglot.parse_one(definition.rule, dialect=DIALECT)
        except (SqlglotError, RecursionError):
            return names  # admission names the fault with its rule
        for table in tree.find_all(exp.Table):
            if isinstance(table.this, exp.Identifier) and table.name not in names:
                names.append(table.name)
        return names

    def plan(self, request: Mapping[str, Any], scope: QueryScope) -> AdmittedRule:
        return admit_rule(Definition.from_dict(request), scope)
