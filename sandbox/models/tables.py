"""The tables of models and scoring services, on the store's one ``metadata``.

Imported by :meth:`sandbox.core.store.Store._migrate` before ``create_all``. No table
holds an entity's key or a feature value: subjects appear only as keyed hashes
(:mod:`sandbox.verification.keys`), scores as a grade of the service's bands.
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text

from sandbox.core.store import metadata

P = "principals.id"

# One row per trained model, passed or refused: its request, its signed card.
models = Table(
    "models",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("operator_id", Integer, ForeignKey(P), nullable=False),
    Column("agreement_id", Integer),  # of the first dataset's grant; None: a direct grant
    Column("request_json", Text, nullable=False),
    Column("status", String(20), nullable=False),  # passed | refused | disposed
    Column("card_json", Text, nullable=False),
    Column("signature", String(200), nullable=False),
    Column("versions_json", Text, nullable=False),
    Column("scores_path", Text),  # relative to the home: keyed hash -> score (passed only)
    Column("created_at", String(40), nullable=False),
)

# A scoring service: a passed model published for consumers under bands of grades.
score_services = Table(
    "score_services",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("model", String(64), nullable=False),
    Column("operator_id", Integer, ForeignKey(P), nullable=False),
    Column("agreement_id", Integer, nullable=False),
    Column("definition_json", Text, nullable=False),
    Column("status", String(20), nullable=False),  # policies.verification.ProductState
    Column("approved_by", Integer, ForeignKey(P)),
    Column("index_rows", Integer),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
)

# The grade of every scored subject of a published service, by keyed hash.
score_index = Table(
    "score_index",
    metadata,
    Column("service", String(64), primary_key=True),
    Column("subject_hash", String(64), primary_key=True),
    Column("grade", String(40), nullable=False),
)

# One row per subject answered (or refused) in a scoring call.
score_calls = Table(
    "score_calls",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("request_id", String(40), nullable=False),
    Column("service", String(64), nullable=False),
    Column("consumer_id", Integer, ForeignKey(P), nullable=False),
    Column("subject_hash", String(64), nullable=False),
    Column("grade", String(40)),  # null: refused
    Column("refusal", String(40)),
    Column("consent_json", Text),
    Column("ledger_seq", Integer, nullable=False),
    Column("ts", String(40), nullable=False),
    Index("ix_score_calls_subject", "subject_hash"),
)

# A passed model's numbers, kept inside for its export (sandbox.models.export): the
# worker's arrays with the trees' node values, whose canonical JSON hashes to the card's
# model_sha256. Deleted with the scores when the agreement's disposal clause runs.
model_files = Table(
    "model_files",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("arrays_json", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)

# The export of a model file: the operator asks, an authority covering the agreement
# approves (the product is written then) or rejects; the agreement's end disposes of it.
model_exports = Table(
    "model_exports",
    metadata,
    Column("name", String(64), primary_key=True),  # the model's
    Column("operator_id", Integer, ForeignKey(P), nullable=False),
    Column("agreement_id", Integer, nullable=False),
    Column("status", String(20), nullable=False),  # sandbox.models.export.ExportState
    Column("reason", Text),  # a rejection's
    Column("decided_by", Integer, ForeignKey(P)),
    Column("product_id", String(64)),  # once approved: the product in products/
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
)
