"""A job's states and the transitions between them, with no store attached: the run
layer moves jobs through them (:mod:`sandbox.run.jobstate`), and the layers below it
(a product's reader, for one) compare with them without importing the run layer."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    SUBMITTED = "submitted"
    REFUSED = "refused"
    QUEUED = "queued"
    RUNNING = "running"
    CHECKING = "checking"
    RELEASED = "released"
    WITHHELD = "withheld"
    FAILED = "failed"


TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.SUBMITTED: frozenset({JobState.REFUSED, JobState.QUEUED, JobState.FAILED}),
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.FAILED}),
    JobState.RUNNING: frozenset({JobState.CHECKING, JobState.FAILED}),
    JobState.CHECKING: frozenset({JobState.RELEASED, JobState.WITHHELD, JobState.FAILED}),
    JobState.WITHHELD: frozenset({JobState.RELEASED}),
}

ARTICLE_OF = {
    JobState.REFUSED: "Art. 15",
    JobState.RELEASED: "Art. 15",
    JobState.WITHHELD: "Art. 15",
}

ACTIVE_STATES = (JobState.SUBMITTED, JobState.QUEUED, JobState.RUNNING, JobState.CHECKING)


def may_transition(old: JobState, new: JobState) -> bool:
    return new in TRANSITIONS.get(old, frozenset())
