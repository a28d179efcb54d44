"""Pydantic models of request and response bodies: the API's OpenAPI schema.

Free-form parts (a quality profile, a check report, a manifest, ledger details)
stay ``dict``: their shape is owned by the module that writes them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$"
# The headers of an evaluation material's download (GET /v1/evaluation-materials/{id}):
# the SHA-256 recorded at its submission, and the name it was sent under (URL-quoted).
MATERIAL_SHA256 = "X-Material-Sha256"
MATERIAL_NAME = "X-Material-Filename"
MAX_ID = 2**53


class ErrorBody(BaseModel):
    code: str
    message: str
    article: str | None
    request_id: str


class ErrorEnvelope(BaseModel):
    error: ErrorBody


# The states of a job still on its way (the client polls until a job leaves them).
ACTIVE_STATES = frozenset({"submitted", "queued", "running", "checking"})


class Health(BaseModel):
    status: str


class Me(BaseModel):
    id: int
    name: str
    role: str
    org: str
    jurisdiction: str | None


class PrincipalStatus(BaseModel):
    """A principal's lifecycle state after a deactivation or reactivation."""

    name: str
    role: str
    jurisdiction: str | None
    status: str


class RotatedToken(PrincipalStatus):
    """A principal's new token, shown once; the old one is refused from now on."""

    token: str


class LifecycleReason(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(max_length=2000, description="why; written to the ledger")


class DatasetSummary(BaseModel):
    name: str
    provider_id: int
    version: int
    rows: int
    bytes: int
    sha256: str
    created_at: str


class DatasetDetail(BaseModel):
    dataset: str
    version: int
    rows: int
    sha256: str
    created_at: str
    classification: dict[str, Any] | None
    profile: dict[str, Any] | None


class Registration(BaseModel):
    dataset: str
    version: int
    changed: bool
    rows: int
    sha256: str


class RegisterByUri(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=NAME, max_length=100)
    uri: str = Field(min_length=1, max_length=4096)
    classification: dict[str, Any]


class GrantSummary(BaseModel):
    """A grant as its operator, the dataset's provider, the authority or an auditor sees it."""

    id: int
    operator: str
    dataset: str
    kinds: list[str]
    columns: list[str] | str
    extra_aggregates: list[str]
    aggregate_expressions: bool
    disclosure: dict[str, Any]
    valid_from: str
    valid_until: str
    status: str
    in_term: bool
    agreement: int | None
    review_required: bool


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sql: str = Field(min_length=1, max_length=100_000)
    kind: str = Field(default="sql_aggregate", max_length=64)


class Job(BaseModel):
    job: int
    state: str
    reason: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    product: str | None = None

    @property
    def done(self) -> bool:
        """The job reached a final state (released, withheld, refused or failed)."""
        return self.state not in ACTIVE_STATES


class JobSummary(BaseModel):
    id: int
    kind: str
    state: str  # as ``GET /v1/jobs/{id}`` names it
    product_id: str | None
    created_at: str
    operator_id: int


class Product(BaseModel):
    id: str
    job_id: int
    operator_id: int
    verdict: str
    manifest_sha256: str
    created_at: str


class LedgerEntry(BaseModel):
    seq: int
    ts: str
    actor: str
    role: str
    action: str
    subject: str
    details: Any
    article: str
    prev_hash: str
    hash: str


class LedgerVerification(BaseModel):
    entries: int
    head_seq: int
    head_hash: str


# The answers of the source routes (sandbox.api.routes_sources), here so the client reads
# them without importing the routes.


class Suggestion(BaseModel):
    """A proposed classification, each column's evidence, and the YAML text to edit."""

    source: str
    rows: int
    complete: bool
    classification: dict[str, Any]
    evidence: dict[str, dict[str, Any]]
    notes: list[str]
    yaml: str


class Pull(BaseModel):
    dataset: str
    version: int
    changed: bool
    rows: int
    sha256: str
    trigger: str


class Schedule(BaseModel):
    dataset: str
    daily_at: str | None
    timezone: str


class KeptSource(BaseModel):
    """A dataset that can be pulled again: its source (password as ***), schedule, last pull."""

    dataset: str
    source: str
    daily_at: str | None
    timezone: str
    last_pull_at: str | None
    last_status: str | None
    last_error: str | None
