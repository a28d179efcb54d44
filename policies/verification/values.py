"""Attempts counted per value of each input field, across all consumers and products.

The per-consumer defence (:mod:`.defence`) cannot see many accounts working together:
89 accounts that each try 4 ID numbers for one name stay under every per-consumer
line. So every value a caller supplies (each key of the product: an ID number, a
name, a phone number; and the consent reference) is counted on its own, whoever
sends it, whatever the product:

* answers with the value in the last hour and in the last day (rolling windows in
  buckets of :data:`HOUR_BUCKET_S` and :data:`DAY_BUCKET_S`), settings
  ``verify.value_per_hour`` and ``verify.value_per_day``;
* answers ever about the value of a subject key (the identifying field), setting
  ``verify.subject_lifetime``.

Every answer counts, whatever its code: the counts, and so the refusals, depend only on
how often a value was asked, never on the data, so a refusal does not say whether the
subject exists; and no product definition (its ``miss_codes``) can turn the counting
off. The authority is alerted when ``verify.alert_accounts`` different consumers try
one value within a day.

Refusal rules (``ItemResult.refused``, Art. 19): ``value_hourly_limit``,
``value_daily_limit``, ``subject_lifetime_limit``.
"""

from __future__ import annotations

from dataclasses import dataclass

ARTICLE = "Art. 19"
HOUR_BUCKET_S = 300  # the rolling hour: the last 12 buckets of 5 minutes
DAY_BUCKET_S = 3600  # the rolling day: the last 24 buckets of an hour
HOUR_BUCKETS = 3600 // HOUR_BUCKET_S
DAY_BUCKETS = 86400 // DAY_BUCKET_S


@dataclass(frozen=True)
class ValueLimits:
    """Settings ``verify.value_per_hour``, ``value_per_day``, ``subject_lifetime``,
    ``alert_accounts`` (docs/settings.md)."""

    per_hour: int = 20
    per_day: int = 60
    subject_lifetime: int = 1000
    alert_accounts: int = 3


@dataclass(frozen=True)
class ValueCounts:
    """Answers with one value so far (this call's earlier items included)."""

    hour: int
    day: int
    lifetime: int | None = None  # None: not a subject key's value (no lifetime cap)


def judge(field: str, counts: ValueCounts, limits: ValueLimits) -> tuple[str, str] | None:
    """The rule and message that refuse one more answer with this value, or None.

    The words name the field and the setting, never the value, and are the same
    whether the subject exists or not."""
    if counts.lifetime is not None and counts.lifetime >= limits.subject_lifetime:
        return (
            "subject_lifetime_limit",
            f"the subject given by '{field}' has been verified {limits.subject_lifetime} times, "
            f"the most any subject may be (setting verify.subject_lifetime, {ARTICLE}); "
            "the authority can tell you why",
        )
    if counts.hour >= limits.per_hour:
        return (
            "value_hourly_limit",
            f"the value given for '{field}' was verified {limits.per_hour} times in the last "
            f"hour across all consumers (setting verify.value_per_hour, {ARTICLE}); "
            "try again later",
        )
    if counts.day >= limits.per_day:
        return (
            "value_daily_limit",
            f"the value given for '{field}' was verified {limits.per_day} times in the last "
            f"24 hours across all consumers (setting verify.value_per_day, {ARTICLE}); "
            "try again tomorrow",
        )
    return None


def alert_due(accounts: int, limits: ValueLimits) -> bool:
    """Whether this many consumers trying one value within a day alert the authority."""
    return accounts >= limits.alert_accounts
