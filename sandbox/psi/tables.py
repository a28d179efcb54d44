"""The PSI tables, on the store's one ``metadata`` (imported by ``Store._migrate``).

``psi_terms``: the terms an authority set for an agreement or a direct grant, one
row per dataset column (:class:`policies.psi.PsiTerms`). ``psi_sessions``: one
row per match request, with its metadata only (who, dataset version, column,
mode, declared and received list sizes), never an item; a request the terms
refused is a row too (status ``refused``, no setup), and the daily cap counts
every row. Built setup bundles live in files (``psi/`` in the home), not here.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Integer, String, Table, Text

from sandbox.core.store import metadata

P = "principals.id"

psi_terms = Table(
    "psi_terms",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("agreement_id", Integer),  # exactly one of agreement_id, grant_id
    Column("grant_id", Integer),
    Column("dataset", String(200), nullable=False),
    Column("column_name", String(200), nullable=False),
    Column("mode", String(20), nullable=False),
    Column("min_items", Integer, nullable=False),
    Column("max_items", Integer, nullable=False),
    Column("daily_cap", Integer, nullable=False),
    Column("group_dimensions_json", Text, nullable=False),
    Column("group_threshold", Integer, nullable=False),
    Column("consent_required", Boolean, nullable=False),
    Column("set_by", Integer, ForeignKey(P), nullable=False),
    Column("created_at", String(40), nullable=False),
)

psi_sessions = Table(
    "psi_sessions",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("operator_id", Integer, ForeignKey(P), nullable=False),
    Column("terms_id", Integer, ForeignKey("psi_terms.id"), nullable=False),
    Column("dataset", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("column_name", String(200), nullable=False),
    Column("group_by", String(200)),
    Column("mode", String(20), nullable=False),
    Column("list_size", Integer, nullable=False),  # declared
    Column("received", Integer, nullable=False),  # items processed so far
    Column("chunks", Integer, nullable=False),
    Column("consent_ref", String(200)),
    Column("setup_key", String(300), nullable=False),  # "" when refused
    Column("status", String(20), nullable=False),  # open, closed, refused
    Column("result_size", Integer),  # reported by the client in cardinality mode
    Column("day", String(10), nullable=False),  # UTC date, for the daily cap
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
)
