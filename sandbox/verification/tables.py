"""The tables of verification products, on the store's one ``metadata``.

Imported by :meth:`sandbox.core.store.Store._migrate` before ``create_all``. No table
holds a key value: subjects appear only as keyed hashes (:mod:`sandbox.verification.keys`).
The counters and guesses are the limits' and the enumeration defence's memory; they
are written in the same transaction as the call's ledger entry (group commit), so a
limit is exact across server processes. The ``verify_value_*`` tables count answers per
value of each input field across all consumers (their keys are keyed hashes too).
"""

from __future__ import annotations

from sqlalchemy import Column, ForeignKey, Index, Integer, String, Table, Text

from sandbox.core.store import metadata

P = "principals.id"

verify_products = Table(
    "verify_products",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("operator_id", Integer, ForeignKey(P), nullable=False),
    Column("agreement_id", Integer, nullable=False),
    Column("definition_json", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("approved_by", Integer, ForeignKey(P)),
    Column("index_path", Text),  # relative to the home
    Column("index_versions_json", Text),  # {dataset: version} the index was built from
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
)

# One row per subject answered (or refused per item) in a call.
verify_calls = Table(
    "verify_calls",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("request_id", String(40), nullable=False),
    Column("product", String(64), nullable=False),
    Column("consumer_id", Integer, ForeignKey(P), nullable=False),
    Column("subject_hash", String(64), nullable=False),
    Column("key_hash", String(64), nullable=False),
    Column("code", String(40)),  # null: the item was refused
    Column("refusal", String(40)),
    Column("consent_json", Text),
    Column("versions_json", Text, nullable=False),
    Column("ledger_seq", Integer, nullable=False),
    Column("ts", String(40), nullable=False),
    Index("ix_verify_calls_subject", "subject_hash"),
)

# Counts per window: (kind, key, window) -> n. Kinds: consumer_minute, consumer_day,
# consumer_miss_day, subject_day.
verify_counters = Table(
    "verify_counters",
    metadata,
    Column("kind", String(24), primary_key=True),
    Column("key", String(64), primary_key=True),
    Column("window", String(20), primary_key=True),
    Column("n", Integer, nullable=False),
)

# Distinct subjects a consumer missed for one check value (a name), per day.
verify_guesses = Table(
    "verify_guesses",
    metadata,
    Column("consumer_id", Integer, primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("check_hash", String(64), primary_key=True),
    Column("subject_hash", String(64), primary_key=True),
)

verify_standing = Table(
    "verify_standing",
    metadata,
    Column("consumer_id", Integer, ForeignKey(P), primary_key=True),
    Column("status", String(20), nullable=False),
    Column("reason", Text, nullable=False),
    Column("day", String(10), nullable=False),  # a throttle lasts the day; a block stays
    Column("updated_at", String(40), nullable=False),
)

# Answers per value of an input field (a keyed hash, never the value), across all
# consumers and products (policies.verification.values): span "5m" (bucket: epoch
# seconds // 300) and "1h" (// 3600) for the rolling hour and day, "life" (bucket 0)
# for a subject key's lifetime cap. Old buckets are pruned when the value is written.
verify_value_counts = Table(
    "verify_value_counts",
    metadata,
    Column("value_hash", String(64), primary_key=True),
    Column("span", String(8), primary_key=True),
    Column("bucket", Integer, primary_key=True),
    Column("n", Integer, nullable=False),
)

# Which consumers tried a value (answered or refused), and the hour bucket of their last try.
verify_value_accounts = Table(
    "verify_value_accounts",
    metadata,
    Column("value_hash", String(64), primary_key=True),
    Column("consumer_id", Integer, ForeignKey(P), primary_key=True),
    Column("hour", Integer, nullable=False),
)

# The hour bucket a value last alerted the authority: one alert per value per rolling day.
verify_value_alerts = Table(
    "verify_value_alerts",
    metadata,
    Column("value_hash", String(64), primary_key=True),
    Column("hour", Integer, nullable=False),
    Column("accounts", Integer, nullable=False),
)
