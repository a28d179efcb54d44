"""The interval audit of a lineage's hypercube (:mod:`.interval`), and a secondary
suppression pattern that passes it (:mod:`.pattern`)."""

from .interval import (
    PROTECTION_MINIMUM,
    PROTECTION_SHARE,
    TOTAL,
    AuditParams,
    AuditResult,
    Cell,
    CellAudit,
    Hypercube,
    Values,
    audit,
    cost_key,
)
from .pattern import Pattern, secondary_pattern, structural_pattern

__all__ = [
    "PROTECTION_MINIMUM",
    "PROTECTION_SHARE",
    "TOTAL",
    "AuditParams",
    "AuditResult",
    "Cell",
    "CellAudit",
    "Hypercube",
    "Pattern",
    "Values",
    "audit",
    "cost_key",
    "secondary_pattern",
    "structural_pattern",
]
