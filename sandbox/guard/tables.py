"""Tables of the released-cell history and of the differential-privacy budgets.

Imported by :meth:`sandbox.core.store.Store._migrate` before ``create_all``. These
tables never leave the platform: entity numbers and contributor bitmaps are as
sensitive as the data they were computed from.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from sandbox.core.store import metadata

# A stable number per entity key and dataset name (the lineage: every version of a
# dataset numbers the same person alike); numbers are dense, appended as keys appear.
entity_numbers = Table(
    "entity_numbers",
    metadata,
    Column("dataset", String(200), nullable=False),
    Column("entity_key", Text, nullable=False),
    Column("number", Integer, nullable=False),
    PrimaryKeyConstraint("dataset", "entity_key"),
    Index("ix_entity_numbers_number", "dataset", "number"),
)

# One row per released cell (row of an output): its contributors as a roaring bitmap.
released_cells = Table(
    "released_cells",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dataset", String(200), nullable=False),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("row", Integer, nullable=False),
    Column("label", Text, nullable=False),  # group key values, JSON
    Column("cardinality", Integer, nullable=False),
    Column("bitmap", LargeBinary, nullable=False),
    Column("created_at", String(40), nullable=False),
    Index("ix_released_cells_dataset", "dataset", "id"),
    Index("ix_released_cells_label", "dataset", "label"),
)

# Cells released by requests that are not jobs (HE group sums): the same history, so
# an HE answer is judged against SQL releases and the other way round.
released_request_cells = Table(
    "released_request_cells",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dataset", String(200), nullable=False),
    Column("kind", String(40), nullable=False),  # the ledger action, e.g. he.sum
    Column("principal_id", Integer, ForeignKey("principals.id"), nullable=False),
    Column("row", Integer, nullable=False),
    Column("label", Text, nullable=False),  # group values, JSON
    Column("cardinality", Integer, nullable=False),
    Column("bitmap", LargeBinary, nullable=False),
    Column("created_at", String(40), nullable=False),
    Index("ix_released_request_cells_dataset", "dataset", "id"),
)

# The differential-privacy mode of an agreement for one dataset: the epsilon each job
# spends and the bounds of its measures. ``epsilon_total`` is the agreement's own total
# of the model before the population budgets (issue 18): no longer read, written as 0.
dp_budgets = Table(
    "dp_budgets",
    metadata,
    Column("agreement_id", Integer, nullable=False),
    Column("dataset", String(200), nullable=False),
    Column("epsilon_total", Float, nullable=False),
    Column("epsilon_per_query", Float, nullable=False),
    Column("bounds_json", Text, nullable=False),  # {measure column: [lower, upper]}
    Column("configured_by", Integer, ForeignKey("principals.id"), nullable=False),
    Column("created_at", String(40), nullable=False),
    PrimaryKeyConstraint("agreement_id", "dataset"),
)

# The spends of that earlier model (per agreement and dataset, written at release); no
# longer written or read: :data:`dp_charges` holds every spend since.
dp_spends = Table(
    "dp_spends",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("agreement_id", Integer, nullable=False),
    Column("dataset", String(200), nullable=False),
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("epsilon", Float, nullable=False),
    Column("created_at", String(40), nullable=False),
    Index("ix_dp_spends", "agreement_id", "dataset"),
)

# One yearly epsilon per entity population (issue 18): ``person`` (every dataset whose
# entity_kind is person or undeclared) or ``organisation``; the year is a UTC year.
dp_population_budgets = Table(
    "dp_population_budgets",
    metadata,
    Column("population", String(20), nullable=False),
    Column("year", Integer, nullable=False),
    Column("epsilon", Float, nullable=False),
    Column("set_by", Integer, ForeignKey("principals.id"), nullable=False),
    Column("updated_at", String(40), nullable=False),
    PrimaryKeyConstraint("population", "year"),
)

# An agreement's share of one population-year; the shares of a population-year never
# add up to more than its epsilon.
dp_shares = Table(
    "dp_shares",
    metadata,
    Column("agreement_id", Integer, nullable=False),
    Column("population", String(20), nullable=False),
    Column("year", Integer, nullable=False),
    Column("epsilon", Float, nullable=False),
    Column("set_by", Integer, ForeignKey("principals.id"), nullable=False),
    Column("updated_at", String(40), nullable=False),
    PrimaryKeyConstraint("agreement_id", "population", "year"),
)

# One row per DP job admitted to run: its epsilon, charged in the transaction that queues
# it and never refunded (withheld, failed or released alike).
dp_charges = Table(
    "dp_charges",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id"), primary_key=True),
    Column("agreement_id", Integer, nullable=False),
    Column("population", String(20), nullable=False),
    Column("year", Integer, nullable=False),
    Column("dataset", String(200), nullable=False),
    Column("epsilon", Float, nullable=False),
    Column("created_at", String(40), nullable=False),
    Index("ix_dp_charges_population", "population", "year", "agreement_id"),
)

# The numbering as the job worker reads it (issue 25, :mod:`sandbox.guard.numbering`):
# Parquet copies of the store's ``entity_numbers`` rows, one per range of numbers.
entity_number_segments = Table(
    "entity_number_segments",
    metadata,
    Column("dataset", String(200), nullable=False),
    Column("first", Integer, nullable=False),
    Column("last", Integer, nullable=False),
    Column("path", Text, nullable=False),  # relative to the platform home
    Column("created_at", String(40), nullable=False),
    PrimaryKeyConstraint("dataset", "first"),
)

# The dataset versions whose every entity key has a number in a segment, and the file
# of each of their rows' numbers the evidence query reads beside the data.
numbered_versions = Table(
    "numbered_versions",
    metadata,
    Column("dataset", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("keys", Integer, nullable=False),  # keys this version numbered first
    Column("rows_path", Text, nullable=False),  # each row's number, in row order
    Column("created_at", String(40), nullable=False),
    PrimaryKeyConstraint("dataset", "version"),
)

# One row per table-mode person job admitted to run (issue 17, item 5): the quarterly cap
# per agreement counts them. ``agreement_id`` is NULL for a job under an authority's
# direct grant, which is then counted per operator.
person_jobs = Table(
    "person_jobs",
    metadata,
    Column("job_id", Integer, ForeignKey("jobs.id"), primary_key=True),
    Column("agreement_id", Integer),
    Column("operator_id", Integer, ForeignKey("principals.id"), nullable=False),
    Column("quarter", String(8), nullable=False),
    Index("ix_person_jobs_quarter", "quarter", "agreement_id"),
)

# The audit across releases (issue 17, item 3, "one hypercube per lineage"): every cell of
# every additive measure of a released table-mode output over declared code lists, by
# lineage (dataset name), snapshot, measure key and WHERE key. ``pending`` is 1 for a
# withheld output's cells until the checkers release it (only then are they history).
lineage_cells = Table(
    "lineage_cells",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("dataset", String(200), nullable=False),
    Column("snapshot", String(80), nullable=False),  # the version's sha256: same values
    Column("job_id", Integer, ForeignKey("jobs.id"), nullable=False),
    Column("measure", Text, nullable=False),  # e.g. sum(capital), count_star(*)
    Column("where_key", Text, nullable=False),  # the normalised WHERE, '' without one
    Column("dimensions", Text, nullable=False),  # JSON list of column names, sorted
    Column("codes", Text, nullable=False),  # JSON list, one code per dimension; null: TOTAL
    Column("value", Float, nullable=False),
    Column("state", String(12), nullable=False),  # released, protected, suppressed
    Column("need_down", Float, nullable=False),  # protected: the interval it must keep
    Column("need_up", Float, nullable=False),
    Column("bounded", Integer, nullable=False),  # 1: no contribution is negative
    Column("pending", Integer, nullable=False),
    Column("created_at", String(40), nullable=False),
    Index("ix_lineage_cells_key", "dataset", "measure", "where_key", "pending"),
    Index("ix_lineage_cells_job", "job_id"),
)
