"""The output check: statistical disclosure control of an aggregate result (Art. 15).

Raw data may never reach a consumer, and an aggregate over a handful of people
or one dominant enterprise is raw data in disguise. This module decides, cell
by cell, what of an admitted query's result may leave the sandbox. It reads the
visible columns and the evidence columns fixed by :mod:`policies.outputs`, and
it is a pure function over a pyarrow table: no engine, no I/O.

The rules are data: :data:`RULES` maps a name to a small pure function of one
cell's evidence that returns a :class:`RuleOutcome` (a verdict and a summary in
plain words). The semantics follow ACRO's default risk appetite:

``threshold``
    fewer than ``min_entities`` entities contribute to the cell, or to its row
    (the row's ``__n``): suppress. A zero COUNT cell is left to ``zero``. Under
    ``ROUND_10_5`` a count cell whose value is below ``min_entities`` is
    suppressed as well (the "10" of 10-5).
``negative``
    SUM / AVG with an entity whose own sum is negative: shares of a total are
    then meaningless, so dominance and p% are skipped and a person reviews it.
``dominance``
    SUM / AVG: the top ``dominance_n`` entities hold more than ``dominance_k``
    of the total: suppress. The evidence carries the top two contributions
    only, so ``dominance_n`` is 1 or 2.
``p_ratio``
    SUM / AVG: ``total - top1 - top2 < p_ratio * top1``: the second largest
    contributor could estimate the largest too closely; suppress.
``zero``
    a COUNT cell equal to 0: ``zero_cells`` decides (review by default: only a
    person can tell a structural zero from a disclosive one).
``missing``
    rows with a NULL argument were left out: a note, never a suppression.

A cell's verdict is the strictest of its rules with SUPPRESS above REVIEW: a
cell that is suppressed anyway needs no reviewer. Complementary suppression of
margins lives in :mod:`policies.suppression`. Boundaries are compared exactly
(``fractions.Fraction``): "exactly 90 %" is not "more than 90 %".

Summaries never contain a cell's value, its contributor count or its top
contributions: they name the rule, the row and column, and what to do next.

The parts: :mod:`.params` (parameters and verdicts), :mod:`.cells` (the rules per cell),
:mod:`.tables` (the check of a whole output).
"""

from policies.disclosure.cells import (
    ADVICE,
    ALL_RULES,
    RULES,
    SKIPPED_AFTER,
    VERDICT_RANK,
    CellEvidence,
    CellReport,
    RuleOutcome,
    rule_dominance,
    rule_missing,
    rule_negative,
    rule_p_ratio,
    rule_threshold,
    rule_zero,
)
from policies.disclosure.params import (
    ARTICLE,
    COUNTS,
    CellVerdict,
    DisclosureParams,
    Mitigation,
    OutputVerdict,
)
from policies.disclosure.tables import CheckResult, check_output

__all__ = [
    "ADVICE",
    "ALL_RULES",
    "ARTICLE",
    "COUNTS",
    "CellEvidence",
    "CellReport",
    "CellVerdict",
    "CheckResult",
    "DisclosureParams",
    "Mitigation",
    "OutputVerdict",
    "RULES",
    "RuleOutcome",
    "SKIPPED_AFTER",
    "VERDICT_RANK",
    "check_output",
    "rule_dominance",
    "rule_missing",
    "rule_negative",
    "rule_p_ratio",
    "rule_threshold",
    "rule_zero",
]
