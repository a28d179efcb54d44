"""The platform's one exception tree.

Every error a user can see is a :class:`SandboxError`: it carries a machine
``code``, a user-safe ``message`` (never a protected value, never a traceback)
and, where one applies, the ``article`` of the regulation it enforces.
Library errors (DuckDB, pyarrow, SQLAlchemy, ...) are caught at the adapter
that called the library and re-raised as one of these, ``from`` the original.

The tree lives in ``policies`` because every other package may import
``policies`` (imports point one way: sandbox -> jobs -> policies;
connectors -> policies)::

    SandboxError
    +-- ConfigError          a setting or a file of the platform is wrong
    +-- InputError           bad user input (a file, a column, a name)
    |   +-- ClassificationError  a classification file does not fit its data
    |   +-- SourceError          a data source cannot be opened or read
    +-- AuthError            unknown or missing token
    +-- PermissionDenied     the principal's role or grant does not allow it
    +-- NotFound             no such object
    +-- Conflict             the object exists or is in the wrong state
    +-- PolicyRefusal        a job was refused by a policy rule (names the rule)
    +-- JobFailed            the job ran and failed (time, memory, rows, engine)
    +-- IntegrityError       a ledger or product failed verification
    +-- DiskFull             the platform's disk or quota is full; nothing partial kept
    +-- LimitExceeded        a size or rate limit of the platform
    |   +-- PayloadTooLarge  a body or upload over its cap
    |   +-- RateLimited      too many requests of one principal
    +-- MethodNotAllowed     (HTTP) the route exists, the method does not
    +-- NotReady             the store or the key is not reachable
    +-- InternalError        anything unexpected; never a traceback

and below InputError, ``InvalidRequest``: a request that does not fit the API's
schema. The code of each class is what the HTTP API and the client share
(:mod:`sandbox.core.codes` maps codes to HTTP statuses).
"""

from __future__ import annotations

from typing import Any


class SandboxError(Exception):
    """Base of every error the platform shows to a user."""

    code = "sandbox_error"
    exit_code = 1
    # Set on an error the HTTP client raises: the response's status and request id.
    status: int | None = None
    request_id: str | None = None

    def __init__(self, message: str, *, article: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.article = article
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        if self.article and self.article not in self.message:
            return f"{self.message} ({self.article})"
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "article": self.article}


class ConfigError(SandboxError):
    code = "config_error"


class InputError(SandboxError):
    code = "bad_input"


class ClassificationError(InputError):
    code = "bad_classification"


class SourceError(InputError):
    code = "bad_source"


class AuthError(SandboxError):
    code = "unauthenticated"


class PermissionDenied(SandboxError):
    code = "forbidden"


class NotFound(SandboxError):
    code = "not_found"


class Conflict(SandboxError):
    code = "conflict"


class PolicyRefusal(SandboxError):
    """A request refused by a named policy rule.

    ``rule`` is the machine name of the rule (``identifier_literal``), ``subject``
    the column, function or clause it is about, ``hint`` what the user may do.
    """

    code = "refused"

    def __init__(
        self,
        rule: str,
        message: str,
        *,
        article: str | None = "Art. 15",
        subject: str | None = None,
        hint: str | None = None,
    ):
        text = message if not hint else f"{message}. {hint}"
        super().__init__(text, article=article)
        self.rule = rule
        self.subject = subject
        self.hint = hint

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out.update(rule=self.rule, subject=self.subject)
        return out


class JobFailed(SandboxError):
    code = "job_failed"


class IntegrityError(SandboxError):
    code = "integrity"


class DiskFull(SandboxError):
    """The platform's disk (or quota) is full; nothing partial was kept."""

    code = "disk_full"


class InvalidRequest(InputError):
    code = "invalid_request"


class LimitExceeded(SandboxError):
    code = "limit_exceeded"


class PayloadTooLarge(LimitExceeded):
    code = "payload_too_large"


class RateLimited(LimitExceeded):
    code = "rate_limited"
    # Extra response headers the API sends with it (Retry-After).
    headers: dict[str, str] | None = None


class MethodNotAllowed(SandboxError):
    code = "method_not_allowed"


class NotReady(SandboxError):
    code = "not_ready"


class InternalError(SandboxError):
    code = "internal_error"
