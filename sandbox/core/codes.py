"""Error codes and their HTTP statuses: one table shared by the API and its client.

The server answers every error with an envelope whose ``code`` is the exception's;
its HTTP status comes from this table. The client turns an envelope back into the
same exception class by its code, so a caller of :class:`sandbox.client.Client`
catches :class:`~policies.errors.NotFound` whether it ran in-process or over HTTP.
The classes live in :mod:`policies.errors`, the platform's one exception tree.
"""

from __future__ import annotations

from policies.errors import (
    AuthError,
    ClassificationError,
    ConfigError,
    Conflict,
    DiskFull,
    InputError,
    IntegrityError,
    InternalError,
    InvalidRequest,
    JobFailed,
    LimitExceeded,
    MethodNotAllowed,
    NotFound,
    NotReady,
    PayloadTooLarge,
    PermissionDenied,
    PolicyRefusal,
    RateLimited,
    SandboxError,
    SourceError,
)

# code -> (HTTP status, class the client raises)
CODES: dict[str, tuple[int, type[SandboxError]]] = {
    SandboxError.code: (400, SandboxError),
    ConfigError.code: (500, ConfigError),
    InputError.code: (400, InputError),
    ClassificationError.code: (400, ClassificationError),
    SourceError.code: (400, SourceError),
    InvalidRequest.code: (422, InvalidRequest),
    AuthError.code: (401, AuthError),
    PermissionDenied.code: (403, PermissionDenied),
    NotFound.code: (404, NotFound),
    MethodNotAllowed.code: (405, MethodNotAllowed),
    Conflict.code: (409, Conflict),
    PolicyRefusal.code: (403, PolicyRefusal),
    JobFailed.code: (409, JobFailed),
    IntegrityError.code: (409, IntegrityError),
    PayloadTooLarge.code: (413, PayloadTooLarge),
    RateLimited.code: (429, RateLimited),
    LimitExceeded.code: (429, LimitExceeded),
    NotReady.code: (503, NotReady),
    DiskFull.code: (507, DiskFull),
    InternalError.code: (500, InternalError),
}


def status_for(exc: SandboxError) -> int:
    """The status of an exception: by its code, else by the nearest class that has one.

    A specific code such as ``own_organisation`` on a PermissionDenied is a 403
    like every PermissionDenied, though the table does not name it.
    """
    if exc.code in CODES:
        return CODES[exc.code][0]
    for cls in type(exc).__mro__:
        code = getattr(cls, "code", None)
        if code in CODES and CODES[code][1] is cls:
            return CODES[code][0]
    return 400


def status_of(code: str) -> int:
    return CODES.get(code, (400, SandboxError))[0]


# The class of an envelope whose specific code the table does not name (such as
# ``not_appointed`` on a PermissionDenied), by its HTTP status; the code is kept.
BY_STATUS: dict[int, type[SandboxError]] = {
    400: InputError,
    401: AuthError,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: LimitExceeded,
    503: NotReady,
}


def error_from(
    code: str,
    message: str,
    article: str | None,
    rule: str | None = None,
    subject: str | None = None,
    status: int | None = None,
) -> SandboxError:
    """The exception a client raises for an envelope; unknown codes keep their code and
    take the class of their HTTP status, so the caller sees the same kind of error."""
    _, cls = CODES.get(code, (400, BY_STATUS.get(status or 0, SandboxError)))
    if cls is PolicyRefusal:
        return PolicyRefusal(rule or "refused", message, article=article, subject=subject)
    return cls(message, article=article, code=code)
