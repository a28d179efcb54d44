"""Verification products (核验, Art. 4, 19): their definition, its admission, and the plan
of the index that answers calls.

A verification product answers one question about one subject with a code from a
declared set (``match``/``mismatch``/``not_found``; ``yes``/``no``/``not_found``), never a
value. Its definition names a dataset, the key columns a caller supplies, the codes,
and a rule: one SELECT whose only output is a ``CASE`` of aggregates over the subject's
rows, each branch a declared code::

    SELECT CASE WHEN COUNT(*) = 0 THEN 'not_found'
                WHEN SUM(CASE WHEN name = $name THEN 1 ELSE 0 END) > 0 THEN 'match'
                ELSE 'mismatch' END
    FROM persons WHERE pid = $pid

Keys are the caller's bound parameters (``$pid`` or ``:pid``), named like the key
columns. Two kinds, told apart by where they stand:

* **subject keys** (``pid``): ``column = $key`` AND-ed into WHERE on the first table;
  they pick the subject's rows. The rule reads nothing else.
* **check keys** (``name``): compared (``=``, ``<>``) with a column only inside the
  aggregates of the CASE.

Identifiers may be compared with parameters only, never with literals: everything
else of the rule is admitted by the SQL checker (:func:`policies.admission.admit`) as
an aggregate query over the same FROM and WHERE, so the column classes, the function
allow-lists, the join rules and the ``identifier_literal`` rule are the jobs' own.
The difference from a job: the rule may read one subject's rows, and its only output
is a code (the authority approves the code set before publication).

Why parameters only in those two places: then the answer depends on a check value
only through "equals one of the subject's values, or none of them", so the platform
can precompute every answer (:func:`index_plan`): one code per subject and per value
its rows hold, one code per subject for "none of them" (:data:`NO_MATCH` stands for
it), and one code for an unknown subject (the rule over no rows). Calls then look
up a keyed hash, never scan.

Refusal rules of this module (``PolicyRefusal.rule``): ``rule_shape``,
``rule_output``, ``undeclared_code``, ``parameter``, ``parameter_position``,
``key_column``, ``no_subject_key``, ``definition``; and every rule of
:mod:`policies.admission`.

The parts: :mod:`.common` (states, limits), :mod:`.definition`, :mod:`.rules` (admission),
:mod:`.index` (the index plan), :mod:`.defence` (consent, enumeration defence), :mod:`.values`
(attempts per value of each input field across all consumers; its refusal rules
``value_hourly_limit``, ``value_daily_limit``, ``subject_lifetime_limit``; and the rule
``miss_codes`` of :meth:`Definition.require_misses`).
"""

from policies.verification.common import (
    ARTICLE,
    CODE_PATTERN,
    DEFAULT_MISS_CODES,
    DIALECT,
    MAX_KEYS,
    NAME_PATTERN,
    NORMALISE_FN,
    TRANSITIONS,
    ProductState,
    Standing,
    may_move,
)
from policies.verification.defence import Consent, Signals, Thresholds, assess, worse
from policies.verification.definition import Definition
from policies.verification.index import IndexPlan, index_plan, lookup_patterns
from policies.verification.rules import AdmittedRule, KeyUse, admit_rule
from policies.verification.values import ValueCounts, ValueLimits, alert_due, judge

__all__ = [
    "ARTICLE",
    "AdmittedRule",
    "CODE_PATTERN",
    "Consent",
    "DEFAULT_MISS_CODES",
    "DIALECT",
    "Definition",
    "IndexPlan",
    "KeyUse",
    "MAX_KEYS",
    "NAME_PATTERN",
    "NORMALISE_FN",
    "ProductState",
    "Signals",
    "Standing",
    "TRANSITIONS",
    "Thresholds",
    "ValueCounts",
    "ValueLimits",
    "admit_rule",
    "alert_due",
    "assess",
    "index_plan",
    "judge",
    "lookup_patterns",
    "may_move",
    "worse",
]
